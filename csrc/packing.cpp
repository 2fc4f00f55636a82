// Sequence packing and DP balancing: the C++ twin of oreal_mega/packing.py.
// Every step mirrors the Python reference (same orders, same tie-breaks, float costs summed in the
// same order) so both return identical plans; see that module's docstring for the design.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <queue>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace py = pybind11;

namespace {

using Index = int64_t;
using Bins = std::vector<std::vector<Index>>;

void check_lengths(const std::vector<int64_t>& lengths, std::optional<int64_t> max_tokens) {
  for (size_t i = 0; i < lengths.size(); ++i) {
    const int64_t n = lengths[i];
    if (n < 0) {
      throw std::invalid_argument("sequence " + std::to_string(i) + " has negative length " +
                                  std::to_string(n));
    }
    if (max_tokens && n > *max_tokens) {
      throw std::invalid_argument("sequence " + std::to_string(i) + " has length " + std::to_string(n) +
                                  " > max_tokens " + std::to_string(*max_tokens) +
                                  "; it fits in no micro-batch (raise max_tokens or truncate it)");
    }
  }
}

std::vector<double> sequence_costs(const std::vector<int64_t>& lengths, double attention_coef) {
  std::vector<double> costs(lengths.size());
  for (size_t i = 0; i < lengths.size(); ++i) {
    const double n = static_cast<double>(lengths[i]);
    // volatile: stops a compiler building for FMA hardware from fusing this into n + c*n*n with one
    // rounding, which would differ from Python's n + c * n * n in the last bit
    const volatile double quadratic = attention_coef * n * n;
    costs[i] = n + quadratic;
  }
  return costs;
}

double sum_in_order(const std::vector<double>& costs, const std::vector<Index>& indices) {
  double total = 0.0;
  for (Index i : indices) total += costs[i];
  return total;
}

// Indices sorted by key descending, ties by index ascending. Sorting (key, index) pairs keeps the
// comparisons in contiguous memory.
template <typename T>
std::vector<Index> decreasing_order(const std::vector<Index>& indices, const std::vector<T>& key) {
  std::vector<std::pair<T, Index>> keyed;
  keyed.reserve(indices.size());
  for (Index i : indices) keyed.emplace_back(key[i], i);
  std::sort(keyed.begin(), keyed.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  });
  std::vector<Index> order;
  order.reserve(keyed.size());
  for (const auto& entry : keyed) order.push_back(entry.second);
  return order;
}

std::vector<Index> iota(size_t n) {
  std::vector<Index> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<Index>(i);
  return out;
}

// ---------------------------------------------------------------- Karmarkar-Karp

struct Subset {
  double sum;
  Index head;  // first member, -1 when empty; members are linked through next_item
  Index tail;
};

Subset join(const Subset& a, const Subset& b, std::vector<Index>& next_item) {
  const double total = a.sum + b.sum;
  if (a.head < 0) return {total, b.head, b.tail};
  if (b.head < 0) return {total, a.head, a.tail};
  next_item[a.tail] = b.head;
  return {total, a.head, b.tail};
}

// Stable sort by sum, heaviest first (Python's list.sort is stable too). Insertion sort for the
// usual small k avoids std::stable_sort's buffer allocation on every merge.
void sort_heaviest_first(Subset* subsets, size_t count) {
  if (count > 32) {
    std::stable_sort(subsets, subsets + count, [](const Subset& a, const Subset& b) { return a.sum > b.sum; });
    return;
  }
  for (size_t j = 1; j < count; ++j) {
    const Subset moving = subsets[j];
    size_t pos = j;
    for (; pos > 0 && subsets[pos - 1].sum < moving.sum; --pos) subsets[pos] = subsets[pos - 1];
    subsets[pos] = moving;
  }
}

Bins karmarkar_karp(const std::vector<double>& costs, int64_t k, bool equal_size) {
  const size_t n = costs.size();
  const size_t width = static_cast<size_t>(k);
  Bins parts(width);
  if (n == 0) return parts;
  const std::vector<Index> order = decreasing_order(iota(n), costs);
  std::vector<Index> next_item(n, -1);
  // State s is pool[s * width, (s + 1) * width): k subsets sorted by sum, heaviest first.
  const size_t group = equal_size ? width : 1;
  const size_t num_states = (n + group - 1) / group;
  std::vector<Subset> pool(num_states * width, Subset{0.0, -1, -1});
  for (size_t j = 0; j < n; ++j) {
    const Index i = order[j];
    pool[(j / group) * width + j % group] = {costs[i], i, i};
  }
  // Pop the largest spread first, ties by the lower state id (creation order). A merged state
  // reuses the slot of the first state it consumed.
  struct Entry {
    double spread;
    int64_t id;
    size_t slot;
  };
  auto after = [](const Entry& a, const Entry& b) { return a.spread != b.spread ? a.spread < b.spread : a.id > b.id; };
  auto spread = [&](size_t slot) { return pool[slot * width].sum - pool[slot * width + width - 1].sum; };
  std::vector<Entry> entries;
  entries.reserve(num_states);
  for (size_t slot = 0; slot < num_states; ++slot) entries.push_back({spread(slot), static_cast<int64_t>(slot), slot});
  std::priority_queue<Entry, std::vector<Entry>, decltype(after)> heap(after, std::move(entries));
  int64_t next_id = static_cast<int64_t>(num_states);
  while (heap.size() > 1) {
    const size_t first = heap.top().slot;
    heap.pop();
    const size_t second = heap.top().slot;
    heap.pop();
    Subset* merged = &pool[first * width];
    const Subset* other = &pool[second * width];
    for (size_t j = 0; j < width; ++j) merged[j] = join(merged[j], other[width - 1 - j], next_item);
    sort_heaviest_first(merged, width);
    heap.push({spread(first), next_id++, first});
  }
  const Subset* last = &pool[heap.top().slot * width];
  for (size_t j = 0; j < width; ++j) {
    for (Index i = last[j].head; i >= 0; i = next_item[i]) parts[j].push_back(i);
    std::sort(parts[j].begin(), parts[j].end());
  }
  return parts;
}

// ---------------------------------------------------------------- first-fit-decreasing

// A max-segment-tree over bin free space finds the leftmost bin that fits in O(log n); unopened
// bins have full capacity, so when no open bin fits the next one opens by itself.
Bins first_fit_decreasing(const std::vector<Index>& indices, const std::vector<int64_t>& lengths,
                          int64_t max_tokens) {
  const std::vector<Index> order = decreasing_order(indices, lengths);
  size_t leaves = 1;
  while (leaves < order.size()) leaves *= 2;
  std::vector<int64_t> free(2 * leaves, max_tokens);
  Bins bins;
  for (Index i : order) {
    const int64_t need = lengths[i];
    size_t node = 1;
    while (node < leaves) node = free[2 * node] >= need ? 2 * node : 2 * node + 1;
    const size_t slot = node - leaves;
    if (slot == bins.size()) bins.emplace_back();
    bins[slot].push_back(i);
    free[node] -= need;
    for (node /= 2; node > 0; node /= 2) free[node] = std::max(free[2 * node], free[2 * node + 1]);
  }
  return bins;
}

// ---------------------------------------------------------------- DP plan

std::optional<size_t> costliest_splittable(const std::vector<double>& loads, const Bins& bins) {
  std::optional<size_t> best;
  for (size_t pos = 0; pos < bins.size(); ++pos) {
    if (bins[pos].size() >= 2 && (!best || loads[pos] > loads[*best])) best = pos;
  }
  return best;
}

// Grow `bins` to `count` micro-batches by LPT-splitting the costliest multi-sequence one.
void split_to_count(Bins& bins, std::vector<double>& loads, size_t count, const std::vector<double>& costs) {
  while (bins.size() < count) {
    const std::optional<size_t> target = costliest_splittable(loads, bins);
    if (!target) {
      bins.emplace_back();
      loads.push_back(0.0);
      continue;
    }
    std::vector<Index> halves[2];
    double half_loads[2] = {0.0, 0.0};
    for (Index i : decreasing_order(bins[*target], costs)) {
      const int side = half_loads[1] < half_loads[0] ? 1 : 0;
      halves[side].push_back(i);
      half_loads[side] += costs[i];
    }
    bins[*target] = std::move(halves[0]);
    loads[*target] = half_loads[0];
    bins.push_back(std::move(halves[1]));
    loads.push_back(half_loads[1]);
  }
}

void fill_empty_microbatches(std::vector<Bins>& rank_bins, std::vector<std::vector<double>>& rank_loads,
                             const std::vector<double>& costs) {
  for (size_t rank = 0; rank < rank_bins.size(); ++rank) {
    for (size_t pos = 0; pos < rank_bins[rank].size(); ++pos) {
      if (!rank_bins[rank][pos].empty()) continue;
      std::optional<std::pair<size_t, size_t>> donor;
      for (size_t r = 0; r < rank_bins.size(); ++r) {
        const std::optional<size_t> p = costliest_splittable(rank_loads[r], rank_bins[r]);
        if (p && (!donor || rank_loads[r][*p] > rank_loads[donor->first][donor->second])) donor = {{r, *p}};
      }
      if (!donor) return;  // fewer sequences than micro-batch slots: the remaining empties are unavoidable
      std::vector<Index>& donor_bin = rank_bins[donor->first][donor->second];
      auto moved = std::min_element(donor_bin.begin(), donor_bin.end(), [&](Index a, Index b) {
        return costs[a] != costs[b] ? costs[a] < costs[b] : a < b;
      });
      const Index index = *moved;
      donor_bin.erase(moved);
      rank_loads[donor->first][donor->second] -= costs[index];
      rank_bins[rank][pos].push_back(index);
      rank_loads[rank][pos] = costs[index];
    }
  }
}

Bins balance_partitions(const std::vector<int64_t>& lengths, int64_t k, bool equal_size, double attention_coef) {
  check_lengths(lengths, std::nullopt);
  return karmarkar_karp(sequence_costs(lengths, attention_coef), k, equal_size);
}

Bins pack_microbatches(const std::vector<int64_t>& lengths, int64_t max_tokens) {
  check_lengths(lengths, max_tokens);
  Bins bins = first_fit_decreasing(iota(lengths.size()), lengths, max_tokens);
  for (auto& members : bins) std::sort(members.begin(), members.end());
  return bins;
}

std::vector<Bins> plan_dp_microbatches(const std::vector<int64_t>& lengths, int64_t dp_size, int64_t max_tokens,
                                       double attention_coef) {
  check_lengths(lengths, max_tokens);
  const std::vector<double> costs = sequence_costs(lengths, attention_coef);
  std::vector<Bins> rank_bins;
  std::vector<std::vector<double>> rank_loads;
  for (const auto& part : karmarkar_karp(costs, dp_size, false)) {
    rank_bins.push_back(first_fit_decreasing(part, lengths, max_tokens));
    std::vector<double> loads;
    for (const auto& members : rank_bins.back()) loads.push_back(sum_in_order(costs, members));
    rank_loads.push_back(std::move(loads));
  }
  size_t per_rank = 0;
  for (const auto& bins : rank_bins) per_rank = std::max(per_rank, bins.size());
  for (size_t r = 0; r < rank_bins.size(); ++r) split_to_count(rank_bins[r], rank_loads[r], per_rank, costs);
  fill_empty_microbatches(rank_bins, rank_loads, costs);
  for (auto& bins : rank_bins) {
    for (auto& members : bins) std::sort(members.begin(), members.end());
  }
  return rank_bins;
}

}  // namespace

// Argument checks on the scalars live in oreal_mega/packing.py, which is the only caller.
void register_packing(py::module_& m) {
  m.def("balance_partitions", &balance_partitions, py::arg("lengths"), py::arg("k"), py::arg("equal_size"),
        py::arg("attention_coef"), py::call_guard<py::gil_scoped_release>(),
        "Karmarkar-Karp k-way balancing of sequence costs; see oreal_mega.packing.");
  m.def("pack_microbatches", &pack_microbatches, py::arg("lengths"), py::arg("max_tokens"),
        py::call_guard<py::gil_scoped_release>(), "First-fit-decreasing packing; see oreal_mega.packing.");
  m.def("plan_dp_microbatches", &plan_dp_microbatches, py::arg("lengths"), py::arg("dp_size"),
        py::arg("max_tokens"), py::arg("attention_coef"), py::call_guard<py::gil_scoped_release>(),
        "Per-rank micro-batch plan with equal counts per rank; see oreal_mega.packing.");
}
