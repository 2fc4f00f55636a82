"""Memoisation for the verifier's pure string functions, skipping huge arguments so memory stays bounded."""
import functools

MAX_CACHED_CHARS = 512  # answers longer than this are rare and would make the cache large
_CACHES = []  # every cache made here, for clear_caches()


def clear_caches() -> None:
    """Empty every verifier cache (the bench's cold-cache rate clears them before each item)."""
    for cache in _CACHES:
        cache.cache_clear()


def short_args_cache(maxsize: int = 65_536):
    """lru_cache for functions of strings, used only when every string argument is at most MAX_CACHED_CHARS."""
    def decorate(function):
        cached = functools.lru_cache(maxsize=maxsize)(function)
        _CACHES.append(cached)

        @functools.wraps(function)
        def wrapper(*args):
            if all(len(arg) <= MAX_CACHED_CHARS for arg in args if isinstance(arg, str)):
                return cached(*args)
            return function(*args)
        wrapper.cache_info = cached.cache_info
        return wrapper
    return decorate
