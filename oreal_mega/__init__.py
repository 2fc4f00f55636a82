"""oreal-mega: OREAL outcome-reward RL for LLM math reasoning on megatron-core, Triton and vLLM."""
import warnings

__version__ = "0.1.0"

# megatron-core announces every missing optional accelerator (apex, TransformerEngine) on import.
warnings.filterwarnings("ignore", message=r".*(Apex|Transformer Engine|TransformerEngine).*")
warnings.filterwarnings("ignore", message=r".*cuda_graph_scope.*")
