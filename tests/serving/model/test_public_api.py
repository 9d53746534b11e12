from __future__ import annotations

import mlsyskit.serving.model as model


def test_model_exports() -> None:
    assert set(model.__all__) == {
        "ByteTokenizer", "DecoderLayer", "HFTokenizer", "ModelConfig", "ModelError",
        "ModelOutput", "PagedKVCache", "PagedLlama", "SequenceBatch", "Tokenizer",
        "get_model_config", "load_tokenizer", "max_logit_diff_vs_hf", "model_config_from_hf",
        "model_names", "paged_attention", "paged_full_logits", "save_pretrained", "to_hf_llama",
    }
    assert all(hasattr(model, name) for name in model.__all__)

