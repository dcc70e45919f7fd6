//! The engine against llama.cpp's own llama-bench, grammar cost, and memory.

use std::process::Command;

use k2::model::{
    tool_grammar, ChatModel, ChatRequest, Engine, EngineOptions, GenerateOptions, GrammarOptions,
    Message, ToolChoice, ToolSpec,
};

use super::{rate_stats, stats, Figure, Setup};

fn engine(setup: &Setup, n_ctx: u32) -> Result<Engine, k2::model::ModelError> {
    Engine::load(
        &setup.model,
        EngineOptions {
            n_ctx: Some(n_ctx),
            threads: Some(setup.threads),
            ..EngineOptions::default()
        },
    )
}

/// A prompt of exactly `n` tokens whose first token differs per `seed` (no cache reuse).
fn prompt_of(engine: &Engine, n: usize, seed: usize) -> String {
    let mut text = format!("{seed} ");
    let words = [
        "river", "stone", "light", "harbour", "paper", "window", "orbit", "garden",
    ];
    let mut i = 0;
    while engine.tokenize(&text).len() < n {
        text.push_str(words[(i * 7 + seed) % words.len()]);
        text.push(' ');
        i += 1;
    }
    while engine.tokenize(&text).len() > n {
        text.pop();
    }
    text
}

/// Prompt processing and decode speed, k2 and llama-bench on the same model and threads.
pub async fn raw_speed(
    setup: &Setup,
    figures: &mut Vec<Figure>,
    notes: &mut Vec<String>,
) -> Result<(), Box<dyn std::error::Error>> {
    let (n_prompt, n_gen) = (setup.size(512, 64), setup.size(128, 16));
    let engine = engine(setup, 2048)?;
    let (mut pp, mut tg) = (Vec::new(), Vec::new());
    let (mut ref_pp, mut ref_tg) = (Vec::new(), Vec::new());
    // Warm up as llama-bench does (weights paged in, threads started).
    let warm = GenerateOptions {
        max_tokens: 4,
        ..GenerateOptions::default()
    };
    engine.complete(&prompt_of(&engine, 32, 99), warm).await?;
    // k2 and llama-bench take turns, so that a noisy neighbour slows both alike.
    for r in 0..setup.repeat {
        let prompt = prompt_of(&engine, n_prompt, r);
        let done = engine
            .complete(
                &prompt,
                GenerateOptions {
                    max_tokens: n_gen,
                    ignore_eos: true,
                    ..GenerateOptions::default()
                },
            )
            .await?;
        let u = done.usage;
        pp.push(u.prompt_tokens_evaluated as f64 / u.prompt_time.as_secs_f64());
        tg.push(u.completion_tokens as f64 / u.generation_time.as_secs_f64());
        if let Some((p, g)) = llama_bench(setup, n_prompt, n_gen, notes, r == 0) {
            ref_pp.push(p);
            ref_tg.push(g);
        }
    }
    for (name, ours, theirs, target) in [
        (
            format!("prompt processing, {n_prompt} tokens"),
            pp,
            ref_pp,
            0.95,
        ),
        (format!("decode, {n_gen} tokens"), tg, ref_tg, 0.97),
    ] {
        // The ratio is the median of each turn's ratio: a turn's two runs share the
        // machine's mood, so their ratio is steadier than a ratio of medians.
        let paired: Vec<f64> = ours.iter().zip(&theirs).map(|(a, b)| a / b).collect();
        let ratio = (!paired.is_empty()).then(|| stats(paired).0);
        let reference = (!theirs.is_empty()).then(|| rate_stats(theirs).0);
        let (value, best) = rate_stats(ours);
        figures.push(Figure {
            name,
            value,
            best,
            unit: "tok/s".into(),
            reference,
            ratio,
            target: format!(">= {target}x llama-bench"),
            met: ratio.map(|r| r >= target),
        });
    }
    Ok(())
}

/// One llama-bench run's prompt and decode tok/s, if it is there; the first run notes which
/// llama.cpp it is (or that there is none).
fn llama_bench(
    setup: &Setup,
    n_prompt: usize,
    n_gen: usize,
    notes: &mut Vec<String>,
    first: bool,
) -> Option<(f64, f64)> {
    let Some(bin) = setup.peers.as_ref().map(|p| p.join("llama-bench")) else {
        if first {
            notes.push(
                "llama-bench not found (run scripts/build-peers): no reference for raw speed."
                    .into(),
            );
        }
        return None;
    };
    let run = |args: &[&str]| -> Option<f64> {
        let out = Command::new(&bin)
            .arg("-m")
            .arg(&setup.model)
            .args(args)
            .args(["-t", &setup.threads.to_string()])
            .args(["-r", "1", "-o", "json"])
            .output()
            .ok()?;
        let runs: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let samples = runs.as_array()?.first()?["samples_ts"].as_array()?.clone();
        Some(stats(samples.iter().filter_map(|v| v.as_f64()).collect()).0)
    };
    let (p, g) = (n_prompt.to_string(), n_gen.to_string());
    // Prompt processing from an empty cache; decode at the depth k2 decodes at (after the
    // prompt), since attention slows down as the context fills.
    let pp = run(&["-p", &p, "-n", "0"])?;
    let tg = run(&["-p", "0", "-n", &g, "-d", &p])?;
    if !first {
        return Some((pp, tg));
    }
    let version =
        std::fs::read_to_string(bin.with_file_name("../llama.cpp-version")).unwrap_or_default();
    notes.push(format!(
        "Reference: {} ({}); k2 links {} through llama-cpp-sys-2.",
        bin.display(),
        version.trim(),
        k2::model::llama_cpp_version()
    ));
    Some((pp, tg))
}

/// Decode speed with a tool-call grammar on, against the same decode without it.
pub async fn grammar_cost(
    setup: &Setup,
    figures: &mut Vec<Figure>,
) -> Result<(), Box<dyn std::error::Error>> {
    let n_gen = setup.size(128, 16);
    let engine = engine(setup, 2048)?;
    let tool = ToolSpec {
        name: "write_note".into(),
        description: "Writes a note".into(),
        parameters: serde_json::json!({"type": "object", "properties": {
            "text": {"type": "string", "maxLength": 4000}}, "required": ["text"]}),
    };
    let request = ChatRequest {
        messages: vec![Message::user("Write a long note about rivers.")],
        tools: vec![tool.clone()],
        tool_choice: ToolChoice::Required,
        ..ChatRequest::default()
    };
    let prompt = engine.prompt_for(&request)?;
    let grammar = tool_grammar(
        engine.tool_format(),
        &[tool],
        &ToolChoice::Required,
        &GrammarOptions::default(),
        &|m| engine.is_special_token(m),
    )?;
    let (mut free, mut constrained) = (Vec::new(), Vec::new());
    for _ in 0..setup.repeat {
        for (grammar, into) in [(None, &mut free), (grammar.clone(), &mut constrained)] {
            let done = engine
                .complete(
                    &prompt,
                    GenerateOptions {
                        max_tokens: n_gen,
                        ignore_eos: true,
                        grammar,
                        // The grammar's own cost: no jumping over forced text.
                        fast_forward: false,
                        ..GenerateOptions::default()
                    },
                )
                .await?;
            let u = done.usage;
            into.push(u.completion_tokens as f64 / u.generation_time.as_secs_f64());
        }
    }
    let (reference, _) = stats(free);
    let (value, best) = rate_stats(constrained);
    figures.push(Figure {
        name: format!("decode with a call grammar, {n_gen} tokens"),
        value,
        best,
        unit: "tok/s".into(),
        reference: Some(reference),
        ratio: Some(value / reference),
        target: ">= 0.9x unconstrained".into(),
        met: Some(value / reference >= 0.9),
    });
    Ok(())
}

/// Peak resident memory of this process after the other measurements, against the model
/// file and the KV cache it needs.
pub async fn memory(
    setup: &Setup,
    figures: &mut Vec<Figure>,
) -> Result<(), Box<dyn std::error::Error>> {
    let n_ctx = 4096u32;
    let engine = engine(setup, n_ctx)?;
    let _ = engine
        .chat(ChatRequest {
            options: GenerateOptions {
                max_tokens: setup.size(64, 8),
                ..GenerateOptions::default()
            },
            ..ChatRequest::new(vec![Message::user("Hello")])
        })
        .await?;
    let info = engine.info();
    let file = std::fs::metadata(&setup.model)?.len() as f64;
    // f16 keys and values for every layer and every position.
    let kv_width = info
        .heads_kv
        .zip(info.heads)
        .map(|(kv, h)| info.embedding_length as f64 * kv as f64 / h as f64)
        .unwrap_or(info.embedding_length as f64);
    let kv = n_ctx as f64 * info.layers as f64 * kv_width * 2.0 * 2.0;
    let peak = peak_rss().unwrap_or(f64::NAN);
    let overhead = (peak - file - kv) / (1 << 20) as f64;
    figures.push(Figure {
        name: format!("peak RSS over model file + KV cache ({n_ctx} ctx)"),
        value: overhead,
        best: overhead,
        unit: "MiB".into(),
        reference: Some((file + kv) / (1 << 20) as f64),
        ratio: Some(peak / (file + kv)),
        target: "overhead <= 64 MiB".into(),
        met: Some(overhead <= 64.0),
    });
    Ok(())
}

/// `VmHWM` from /proc, in bytes.
fn peak_rss() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024.0)
}
