//! A tiny Kimi K2-architecture GGUF, written deterministically from a fixed seed.
//!
//! llama.cpp runs Kimi K2 as `deepseek2`: multi-head latent attention (low-rank Q and KV with
//! a decoupled RoPE part, stored in the split `attn_k_b` / `attn_v_b` form of current
//! converters) and mixture-of-experts layers with sigmoid routing, a bias, normalised and
//! scaled weights, and a shared expert, after leading dense layers. This file keeps that
//! shape and K2's RoPE/YaRN settings, scales the widths down (3 layers, width 64, 8 experts,
//! 2 used per token), fills the weights with seeded noise (Q8_0 where llama.cpp can, F32 for
//! norms, the router and `attn_k_b`, whose rows are too short for Q8_0 blocks), and gives it
//! a small byte-level BPE vocabulary (`kimi-k2` pre-tokenizer) with every K2 special token
//! and the official Kimi K2 Instruct chat template (see `fixtures/templates/README.md` for
//! its origin and licence).
//!
//! Used by the tests (`path()` generates it once under `target/tmp/`) and by
//! `cargo run -p k2-model --example tiny_k2 -- OUT.gguf`.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The official Kimi K2 Instruct chat template.
pub const TEMPLATE: &str = include_str!("../fixtures/templates/kimi-k2-instruct.jinja");

/// Every special token of Kimi K2 (Instruct and Thinking), in K2's id order.
pub const SPECIAL_TOKENS: &[&str] = &[
    "[BOS]",
    "[EOS]",
    "<|im_end|>",
    "<|im_user|>",
    "<|im_assistant|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "[EOT]",
    "<|im_system|>",
    "<|tool_calls_section_begin|>",
    "<|tool_calls_section_end|>",
    "<|tool_call_begin|>",
    "<|tool_call_argument_begin|>",
    "<|tool_call_end|>",
    "<|im_middle|>",
    "<think>",
    "</think>",
    "[UNK]",
    "[PAD]",
];

/// The shape, K2's proportions scaled down.
pub mod shape {
    pub const LAYERS: u32 = 3;
    pub const DENSE_LAYERS: u32 = 1;
    pub const EMBD: u64 = 64;
    pub const FF: u64 = 128;
    pub const HEADS: u64 = 4;
    pub const Q_LORA: u64 = 32;
    pub const KV_LORA: u64 = 32;
    pub const QK_NOPE: u64 = 16;
    pub const QK_ROPE: u64 = 8;
    pub const V_HEAD: u64 = 16;
    pub const EXPERTS: u64 = 8;
    pub const EXPERTS_USED: u32 = 2;
    pub const EXPERTS_SHARED: u64 = 1;
    pub const FF_EXPERT: u64 = 32;
    pub const MERGES: usize = 200;
    pub const SEED: u64 = 0x4b32_7469_6e79;
}

/// The file, generated once per target directory (keyed by the generator's own source, so a
/// change to this file makes a new one).
pub fn path() -> PathBuf {
    static PATH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let source = include_str!("tiny_k2.rs");
        let key = source.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        });
        // Cargo gives integration tests a scratch directory inside the target directory.
        let scratch = option_env!("CARGO_TARGET_TMPDIR").map(PathBuf::from);
        let dir = scratch.unwrap_or_else(std::env::temp_dir).join("tiny-k2");
        std::fs::create_dir_all(&dir).expect("create the tiny-k2 directory");
        let path = dir.join(format!("tiny-k2-{key:016x}.gguf"));
        if !path.exists() {
            let tmp = dir.join(format!(".{key:016x}.{}.tmp", std::process::id()));
            write(&tmp).expect("write the tiny K2 GGUF");
            std::fs::rename(&tmp, &path).expect("move the tiny K2 GGUF into place");
        }
        path
    })
    .clone()
}

/// Writes the model to `out`.
pub fn write(out: &Path) -> std::io::Result<()> {
    let mut file = std::io::BufWriter::new(std::fs::File::create(out)?);
    file.write_all(&bytes())?;
    file.flush()
}

/// The whole file.
pub fn bytes() -> Vec<u8> {
    use shape::*;
    let (tokens, types, merges) = vocabulary();
    let n_vocab = tokens.len() as u64;
    let id = |t: &str| tokens.iter().position(|x| x == t).expect("special token") as u32;
    let arch = "deepseek2";
    let mut g = Gguf::default();
    g.str("general.architecture", arch);
    g.str(
        "general.name",
        "tiny-k2 (random weights, Kimi K2 architecture)",
    );
    g.u32("general.alignment", 32);
    g.u32("general.quantization_version", 2);
    let a = |k: &str| format!("{arch}.{k}");
    g.u32(&a("vocab_size"), n_vocab as u32);
    g.u32(&a("context_length"), 131_072);
    g.u32(&a("embedding_length"), EMBD as u32);
    g.u32(&a("feed_forward_length"), FF as u32);
    g.u32(&a("block_count"), LAYERS);
    g.u32(&a("leading_dense_block_count"), DENSE_LAYERS);
    g.u32(&a("attention.head_count"), HEADS as u32);
    // MLA as current converters store it: one shared latent "head" of kv_lora + rope.
    g.u32(&a("attention.head_count_kv"), 1);
    g.u32(&a("attention.key_length"), (KV_LORA + QK_ROPE) as u32);
    g.u32(&a("attention.value_length"), KV_LORA as u32);
    g.u32(&a("attention.key_length_mla"), (QK_NOPE + QK_ROPE) as u32);
    g.u32(&a("attention.value_length_mla"), V_HEAD as u32);
    g.u32(&a("attention.q_lora_rank"), Q_LORA as u32);
    g.u32(&a("attention.kv_lora_rank"), KV_LORA as u32);
    g.f32(&a("attention.layer_norm_rms_epsilon"), 1e-6);
    g.u32(&a("rope.dimension_count"), QK_ROPE as u32);
    // K2: rope_theta 50000, YaRN factor 32 over 4096 original positions, mscale_all_dim 1.
    g.f32(&a("rope.freq_base"), 50_000.0);
    g.str(&a("rope.scaling.type"), "yarn");
    g.f32(&a("rope.scaling.factor"), 32.0);
    g.u32(&a("rope.scaling.original_context_length"), 4096);
    g.f32(&a("rope.scaling.yarn_log_multiplier"), 0.1);
    g.u32(&a("expert_count"), EXPERTS as u32);
    g.u32(&a("expert_used_count"), EXPERTS_USED);
    g.u32(&a("expert_shared_count"), EXPERTS_SHARED as u32);
    g.u32(&a("expert_feed_forward_length"), FF_EXPERT as u32);
    g.u32(&a("expert_group_count"), 1);
    g.u32(&a("expert_group_used_count"), 1);
    g.f32(&a("expert_weights_scale"), 2.827);
    g.bool(&a("expert_weights_norm"), true);
    g.u32(&a("expert_gating_func"), 2); // sigmoid
    g.str("tokenizer.ggml.model", "gpt2");
    g.str("tokenizer.ggml.pre", "kimi-k2");
    g.strs("tokenizer.ggml.tokens", &tokens);
    g.i32s("tokenizer.ggml.token_type", &types);
    g.strs("tokenizer.ggml.merges", &merges);
    g.u32("tokenizer.ggml.bos_token_id", id("[BOS]"));
    g.u32("tokenizer.ggml.eos_token_id", id("[EOS]"));
    g.u32("tokenizer.ggml.eot_token_id", id("<|im_end|>"));
    g.u32("tokenizer.ggml.unknown_token_id", id("[UNK]"));
    g.u32("tokenizer.ggml.padding_token_id", id("[PAD]"));
    g.bool("tokenizer.ggml.add_bos_token", false);
    g.str("tokenizer.chat_template", TEMPLATE);

    g.rng = Rng(SEED);
    let q8 = |g: &mut Gguf, name: &str, dims: &[u64]| g.random(name, dims, TYPE_Q8_0);
    let f32 = |g: &mut Gguf, name: &str, dims: &[u64]| g.random(name, dims, TYPE_F32);
    let ones = |g: &mut Gguf, name: &str, n: u64| g.tensor_f32(name, &[n], &vec![1.0; n as usize]);
    q8(&mut g, "token_embd.weight", &[EMBD, n_vocab]);
    ones(&mut g, "output_norm.weight", EMBD);
    q8(&mut g, "output.weight", &[EMBD, n_vocab]);
    for i in 0..LAYERS {
        let b = |t: &str| format!("blk.{i}.{t}");
        ones(&mut g, &b("attn_norm.weight"), EMBD);
        ones(&mut g, &b("attn_q_a_norm.weight"), Q_LORA);
        ones(&mut g, &b("attn_kv_a_norm.weight"), KV_LORA);
        q8(&mut g, &b("attn_q_a.weight"), &[EMBD, Q_LORA]);
        q8(
            &mut g,
            &b("attn_q_b.weight"),
            &[Q_LORA, HEADS * (QK_NOPE + QK_ROPE)],
        );
        q8(
            &mut g,
            &b("attn_kv_a_mqa.weight"),
            &[EMBD, KV_LORA + QK_ROPE],
        );
        f32(&mut g, &b("attn_k_b.weight"), &[QK_NOPE, KV_LORA, HEADS]);
        q8(&mut g, &b("attn_v_b.weight"), &[KV_LORA, V_HEAD, HEADS]);
        q8(&mut g, &b("attn_output.weight"), &[HEADS * V_HEAD, EMBD]);
        ones(&mut g, &b("ffn_norm.weight"), EMBD);
        if i < DENSE_LAYERS {
            q8(&mut g, &b("ffn_gate.weight"), &[EMBD, FF]);
            q8(&mut g, &b("ffn_down.weight"), &[FF, EMBD]);
            q8(&mut g, &b("ffn_up.weight"), &[EMBD, FF]);
        } else {
            f32(&mut g, &b("ffn_gate_inp.weight"), &[EMBD, EXPERTS]);
            g.tensor_f32(
                &b("exp_probs_b.bias"),
                &[EXPERTS],
                &vec![0.0; EXPERTS as usize],
            );
            q8(
                &mut g,
                &b("ffn_gate_exps.weight"),
                &[EMBD, FF_EXPERT, EXPERTS],
            );
            q8(
                &mut g,
                &b("ffn_down_exps.weight"),
                &[FF_EXPERT, EMBD, EXPERTS],
            );
            q8(
                &mut g,
                &b("ffn_up_exps.weight"),
                &[EMBD, FF_EXPERT, EXPERTS],
            );
            let shared = FF_EXPERT * EXPERTS_SHARED;
            q8(&mut g, &b("ffn_gate_shexp.weight"), &[EMBD, shared]);
            q8(&mut g, &b("ffn_down_shexp.weight"), &[shared, EMBD]);
            q8(&mut g, &b("ffn_up_shexp.weight"), &[EMBD, shared]);
        }
    }
    g.finish()
}

/// splitmix64: small, seeded, the same everywhere.
#[derive(Default)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [-0.25, 0.25).
    fn weights(&mut self, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| ((self.next() >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.5)
            .collect()
    }
}

/// GPT-2's reversible map from bytes to printable characters (byte-level BPE).
fn byte_chars() -> Vec<char> {
    let mut printable: Vec<u32> = (b'!' as u32..=b'~' as u32)
        .chain(0xa1..=0xac)
        .chain(0xae..=0xff)
        .collect();
    let mut chars: Vec<u32> = printable.clone();
    let mut extra = 0;
    for b in 0..256u32 {
        if !printable.contains(&b) {
            printable.push(b);
            chars.push(256 + extra);
            extra += 1;
        }
    }
    let mut by_byte = vec!['\0'; 256];
    for (b, c) in printable.iter().zip(&chars) {
        by_byte[*b as usize] = char::from_u32(*c).expect("valid char");
    }
    by_byte
}

/// Tokens, token types and merges: the 256 byte tokens, merges learnt (greedy BPE, ties by
/// order) from the template and a short English text, then the special tokens.
fn vocabulary() -> (Vec<String>, Vec<i32>, Vec<String>) {
    const NORMAL: i32 = 1;
    const CONTROL: i32 = 3;
    let bytes = byte_chars();
    let sample = format!(
        "{TEMPLATE} The quick brown fox jumps over the lazy dog. Tools are called with \
         arguments and their results come back to the model, which then answers the user. \
         {{\"name\": \"calculator\", \"arguments\": {{\"expression\": \"2 + 2\"}}}}"
    );
    // Words with their leading space, as byte-level BPE pre-tokenizers split them.
    let mut words: BTreeMap<Vec<String>, usize> = BTreeMap::new();
    let mut word = String::new();
    let mut flush = |w: &mut String| {
        if !w.is_empty() {
            let symbols = w.bytes().map(|b| bytes[b as usize].to_string()).collect();
            *words.entry(symbols).or_default() += 1;
            w.clear();
        }
    };
    for c in sample.chars() {
        let boundary = c.is_whitespace() || (!c.is_alphanumeric() && !word.is_empty());
        if boundary && !word.ends_with(' ') {
            flush(&mut word);
        }
        word.push(c);
    }
    flush(&mut word);

    let mut tokens: Vec<String> = bytes.iter().map(|c| c.to_string()).collect();
    let mut merges = Vec::new();
    while merges.len() < shape::MERGES {
        let mut pairs: BTreeMap<(String, String), usize> = BTreeMap::new();
        for (w, n) in &words {
            for p in w.windows(2) {
                *pairs.entry((p[0].clone(), p[1].clone())).or_default() += n;
            }
        }
        // Most frequent first; the BTreeMap order breaks ties the same way every time.
        let best = pairs
            .iter()
            .filter(|((a, b), _)| !tokens.contains(&format!("{a}{b}")))
            .max_by(|x, y| x.1.cmp(y.1).then(y.0.cmp(x.0)));
        let Some(((a, b), _)) = best.map(|(p, n)| (p.clone(), *n)) else {
            break;
        };
        let joined = format!("{a}{b}");
        words = words
            .into_iter()
            .map(|(w, n)| {
                let mut out: Vec<String> = Vec::with_capacity(w.len());
                let mut i = 0;
                while i < w.len() {
                    if i + 1 < w.len() && w[i] == a && w[i + 1] == b {
                        out.push(joined.clone());
                        i += 2;
                    } else {
                        out.push(w[i].clone());
                        i += 1;
                    }
                }
                (out, n)
            })
            .fold(BTreeMap::new(), |mut m, (w, n)| {
                *m.entry(w).or_default() += n;
                m
            });
        merges.push(format!("{a} {b}"));
        tokens.push(joined);
    }
    let mut types = vec![NORMAL; tokens.len()];
    for s in SPECIAL_TOKENS {
        tokens.push(s.to_string());
        types.push(CONTROL);
    }
    (tokens, types, merges)
}

/// A GGUF v3 file being assembled.
#[derive(Default)]
struct Gguf {
    kv: Vec<u8>,
    n_kv: u64,
    infos: Vec<u8>,
    n_tensors: u64,
    data: Vec<u8>,
    rng: Rng,
}

const ALIGN: usize = 32;
const TYPE_F32: u32 = 0;
const TYPE_Q8_0: u32 = 8;

fn put_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend((s.len() as u64).to_le_bytes());
    buf.extend(s.as_bytes());
}

impl Gguf {
    fn key(&mut self, key: &str, kind: u32) {
        put_str(&mut self.kv, key);
        self.kv.extend(kind.to_le_bytes());
        self.n_kv += 1;
    }
    fn u32(&mut self, key: &str, v: u32) {
        self.key(key, 4);
        self.kv.extend(v.to_le_bytes());
    }
    fn f32(&mut self, key: &str, v: f32) {
        self.key(key, 6);
        self.kv.extend(v.to_le_bytes());
    }
    fn bool(&mut self, key: &str, v: bool) {
        self.key(key, 7);
        self.kv.push(v as u8);
    }
    fn str(&mut self, key: &str, v: &str) {
        self.key(key, 8);
        put_str(&mut self.kv, v);
    }
    fn strs(&mut self, key: &str, v: &[String]) {
        self.key(key, 9);
        self.kv.extend(8u32.to_le_bytes());
        self.kv.extend((v.len() as u64).to_le_bytes());
        v.iter().for_each(|s| put_str(&mut self.kv, s));
    }
    fn i32s(&mut self, key: &str, v: &[i32]) {
        self.key(key, 9);
        self.kv.extend(5u32.to_le_bytes());
        self.kv.extend((v.len() as u64).to_le_bytes());
        v.iter().for_each(|x| self.kv.extend(x.to_le_bytes()));
    }

    fn tensor(&mut self, name: &str, dims: &[u64], kind: u32, bytes: &[u8]) {
        while self.data.len() % ALIGN != 0 {
            self.data.push(0);
        }
        put_str(&mut self.infos, name);
        self.infos.extend((dims.len() as u32).to_le_bytes());
        dims.iter().for_each(|d| self.infos.extend(d.to_le_bytes()));
        self.infos.extend(kind.to_le_bytes());
        self.infos.extend((self.data.len() as u64).to_le_bytes());
        self.data.extend(bytes);
        self.n_tensors += 1;
    }
    /// A tensor of seeded noise.
    fn random(&mut self, name: &str, dims: &[u64], kind: u32) {
        let values = self.rng.weights(dims.iter().product::<u64>() as usize);
        match kind {
            TYPE_Q8_0 => self.tensor_q8_0(name, dims, &values),
            _ => self.tensor_f32(name, dims, &values),
        }
    }
    fn tensor_f32(&mut self, name: &str, dims: &[u64], v: &[f32]) {
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.tensor(name, dims, TYPE_F32, &bytes);
    }
    /// Q8_0: blocks of 32 values along the first dimension, an f16 scale and 32 int8s each.
    fn tensor_q8_0(&mut self, name: &str, dims: &[u64], v: &[f32]) {
        assert_eq!(dims[0] % 32, 0, "{name}: rows must be whole Q8_0 blocks");
        let mut bytes = Vec::with_capacity(v.len() / 32 * 34);
        for block in v.chunks(32) {
            let amax = block.iter().fold(0f32, |m, x| m.max(x.abs()));
            let d = amax / 127.0;
            let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
            bytes.extend(f16_bits(d).to_le_bytes());
            bytes.extend(
                block
                    .iter()
                    .map(|x| (x * inv).round().clamp(-127.0, 127.0) as i8 as u8),
            );
        }
        self.tensor(name, dims, TYPE_Q8_0, &bytes);
    }

    fn finish(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.kv.len() + self.infos.len() + self.data.len() + 64);
        out.extend(b"GGUF");
        out.extend(3u32.to_le_bytes());
        out.extend(self.n_tensors.to_le_bytes());
        out.extend(self.n_kv.to_le_bytes());
        out.extend(self.kv);
        out.extend(self.infos);
        while out.len() % ALIGN != 0 {
            out.push(0);
        }
        out.extend(self.data);
        out
    }
}

/// IEEE half precision, round to nearest (finite, normal-range inputs: Q8_0 scales).
fn f16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32 - 127 + 15;
    let mant = b & 0x7f_ffff;
    if exp >= 31 {
        return sign | 0x7c00;
    }
    if exp <= 0 {
        if exp < -10 {
            return sign;
        }
        let m = (mant | 0x80_0000) >> (1 - exp);
        return sign | ((m + 0x1000) >> 13) as u16;
    }
    let h = ((exp as u32) << 10 | (mant >> 13)) + ((mant >> 12) & 1);
    sign | h as u16
}
