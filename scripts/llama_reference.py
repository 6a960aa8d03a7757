"""llama.cpp (through llama-cpp-python, built from source) as the reference for the
text-generation kind. `tokens GGUF FIXTURE OUT`: the token ids llama.cpp gives every string
of a corpus of over 500 (English, Chinese, emoji, code, runs of whitespace, the chat
template's special tokens), special tokens parsed, no BOS added; written as JSON to OUT.
`greedy GGUF OUT`: for 10 fixed chat prompts (written with the file's chat template),
llama.cpp's greedy continuation (64 tokens, or fewer at the end of sequence) and, at each
position, its 8 largest logits; written as JSON to OUT."""

import json
import sys

import llama_cpp


def corpus(sentences):
    chinese = ["你好，世界", "我爱自然语言处理。", "今天天气很好，我们去公园散步吧！", "机器学习是人工智能的一个分支",
               "北京是中国的首都", "这个模型有一亿三千五百万个参数", "请用中文回答", "数据、算法和算力"]
    emoji = ["👋 hello", "🚀🚀🚀", "I ❤️ Rust", "👨‍👩‍👧‍👦 family", "😀😃😄😁", "🇫🇷 and 🇯🇵", "✅ done ❌ failed", "☕️🍰"]
    code = ["fn main() { println!(\"hi\"); }", "def f(x):\n    return x**2\n", "for (let i = 0; i < 10; i++) {}",
            "SELECT * FROM users WHERE id = 42;", "<div class=\"a\">b</div>", "#include <stdio.h>\nint main(void);",
            "x = [i * 2 for i in range(10)]", "if err != nil {\n\treturn err\n}", "{\"key\": [1, 2.5, null, true]}",
            "curl -s localhost:8080/v1/models | jq .", "a->b; c::d<e>(f);", "// comment\n/* block */"]
    spaces = ["a  b", "   leading", "trailing   ", "tab\there", "new\nline", "\n\n\n", "  \t \n ", "x" + " " * 17 + "y",
              "\r\n windows", " ", "  ", "\t", "word\u00a0nbsp", "a \n b \n\n c"]
    specials = ["<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", "<|endoftext|>",
                "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n",
                "text<|im_end|>more", "<|im_start|><|im_end|>", "<|im_start|>user\n你好 👋<|im_end|>"]
    numbers = ["12345", "3.14159", "1,000,000", "2024-12-04", "0x1F", "v1.2.3", "100%", "-42", "1e-9", "9999999999"]
    base = sentences + chinese + emoji + code + spaces + specials + numbers
    out = list(base)
    out += [s.upper() for s in sentences[:20]] + [" " + s for s in sentences[:20]] + [s + "\n" for s in code]
    for i, a in enumerate(base):
        out.append(a + " " + base[(i * 7 + 3) % len(base)])
        out.append(base[(i * 11 + 5) % len(base)] + a)
        out.append(a + "\n\n" + base[(i * 13 + 1) % len(base)] + "  " + base[(i * 5 + 2) % len(base)])
    for sentence in sentences:
        words = sentence.split()
        out.append("  ".join(words))
        out.append("\t".join(words[::-1]))
        out.append(" ".join(w.capitalize() for w in words) + "?!")
    out += [c * n for c in ["a", " ", "!", "é", "中", "🙂", "\n"] for n in (1, 2, 3, 5, 8, 13)]
    seen, unique = set(), []
    for s in out:
        if s not in seen:
            seen.add(s)
            unique.append(s)
    return unique


def tokens(gguf, fixture, out):
    sentences = json.load(open(fixture))["sentences"]
    llm = llama_cpp.Llama(model_path=gguf, vocab_only=True, verbose=False)
    strings = corpus(sentences)
    ids = [llm.tokenize(s.encode("utf-8"), add_bos=False, special=True) for s in strings]
    json.dump({"llama_cpp_python": llama_cpp.__version__, "strings": strings, "ids": ids}, open(out, "w"),
              ensure_ascii=False, indent=0)
    print(f"{len(strings)} strings, {sum(map(len, ids))} tokens")


CHATS = [
    [("user", "What is the capital of France?")],
    [("user", "Write a haiku about the sea.")],
    [("system", "You are a terse assistant."), ("user", "Explain recursion in one sentence.")],
    [("user", "List three primary colors.")],
    [("user", "Translate 'good morning' into Spanish.")],
    [("user", "What is 12 times 12?")],
    [("user", "Give me a name for a pet turtle.")],
    [("user", "Why is the sky blue?")],
    [("user", "Hi!"), ("assistant", "Hello! How can I help you today?"), ("user", "Tell me a fun fact.")],
    [("user", "Write a Python function that reverses a string.")],
]
STEPS = 64
TOP = 8


def greedy(gguf, out):
    import numpy as np

    llm = llama_cpp.Llama(model_path=gguf, n_ctx=1024, n_threads=2, n_batch=512, logits_all=True, verbose=False)
    template = llm.metadata["tokenizer.chat_template"]
    import jinja2

    render = jinja2.Environment().from_string(template)
    eos = llm.token_eos()
    cases = []
    for chat in CHATS:
        prompt = render.render(messages=[{"role": r, "content": c} for r, c in chat], add_generation_prompt=True)
        ids = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
        llm.reset()
        llm.eval(ids)
        continuation, tops = [], []
        for _ in range(STEPS):
            logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
            order = np.argsort(-logits)[:TOP]
            tops.append([[int(i), float(logits[i])] for i in order])
            token = int(order[0])
            continuation.append(token)
            if token == eos:
                break
            llm.eval([token])
        cases.append({"prompt": prompt, "prompt_ids": ids, "continuation": continuation, "top_logits": tops})
        print(f"{len(ids)} prompt tokens -> {llm.detokenize(continuation).decode('utf-8', 'replace')!r}")
    # The build's CPU features decide its sums and its exponential, so which continuation
    # it writes: say which build wrote these.
    system = llama_cpp.llama_print_system_info().decode().strip()
    json.dump({"llama_cpp_python": llama_cpp.__version__, "system_info": system, "cases": cases}, open(out, "w"),
              ensure_ascii=False)


if __name__ == "__main__":
    {"tokens": tokens, "greedy": greedy}[sys.argv[1]](*sys.argv[2:])
