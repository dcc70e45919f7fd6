//! The `k2` binary, end to end (the default model is resolved from the cache or `K2_MODEL`).

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn k2(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_k2"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run k2");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const CONVERSATION: &str = r#"{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}], "add_generation_prompt": true}"#;

#[test]
fn render_with_a_template_file_prints_exactly_the_template_output() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.jinja");
    std::fs::write(
        &file,
        "{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}",
    )
    .unwrap();
    let out = k2(
        &[
            "render",
            "--template",
            file.to_str().unwrap(),
            "--bos-token",
            "<s>",
        ],
        CONVERSATION,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "<s>[system] Be brief.\n[user] Hi\n[assistant]"
    );
}

#[test]
fn render_with_the_model_template_uses_the_embedded_chatml() {
    let out = k2(&["render"], CONVERSATION);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn render_rejects_bad_json_with_a_clear_error() {
    let out = k2(&["render"], "{not json");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("not valid JSON"),
        "{}",
        text(&out.stderr)
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn info_reports_architecture_and_template() {
    let out = k2(&["info", "--json"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["architecture"], "llama");
    assert_eq!(info["vocab_size"], 49152);
    assert!(info["chat_template"]
        .as_str()
        .unwrap()
        .contains("<|im_start|>"));
}

#[test]
fn chat_streams_an_answer() {
    let out = k2(&["chat", "--max-tokens", "8", "Say hi."], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!text(&out.stdout).trim().is_empty());
    assert!(
        text(&out.stderr).contains("8 generated"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_missing_model_is_a_clear_error() {
    let out = k2(&["chat", "--model", "/no/such/file.gguf", "hi"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("model file not found: /no/such/file.gguf"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn parse_prints_content_and_k2_calls() {
    let raw = "Checking.<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>{\"city\": \"Paris\"}<|tool_call_end|><|tool_calls_section_end|>";
    for format in ["k2", "auto"] {
        let out = k2(&["parse", "--format", format], raw);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"content": "Checking.", "tool_calls": [
                {"id": "functions.get_weather:0", "name": "get_weather", "arguments": {"city": "Paris"}}
            ]})
        );
    }
}

#[test]
fn parse_with_the_model_uses_its_format() {
    // SmolLM2's template has no tool support, so k2 speaks Hermes with it.
    let raw = "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"x\": 1}}\n</tool_call>";
    let out = k2(&["parse", "--model", &default_model()], raw);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["tool_calls"][0]["name"], "f");
    assert_eq!(v["tool_calls"][0]["id"], "call_0");
}

#[test]
fn parse_reports_malformed_markup_with_status_2_and_one_line() {
    let out = k2(
        &["parse", "--format", "hermes"],
        "<tool_call>{\"name\": \"f\", \"arguments\": {oops}}</tool_call>",
    );
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("byte"), "{err}");
    assert!(out.stdout.is_empty());
}

fn default_model() -> String {
    let out = k2(&["pull"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).trim().to_string()
}

const TOOLS: &str = r#"[{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
  "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}}, "required": ["city"]}}}]"#;

fn tools_file() -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), TOOLS).unwrap();
    f
}

#[test]
fn grammar_prints_gbnf_for_the_tools() {
    let tools = tools_file();
    let out = k2(&["grammar", "--tools", tools.path().to_str().unwrap()], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let g = text(&out.stdout);
    assert!(
        g.contains("root ::= \"<|tool_calls_section_begin|>\""),
        "{g}"
    );
    assert!(g.contains("\"functions.get_weather:\""), "{g}");
    let out = k2(
        &[
            "grammar",
            "--tools",
            tools.path().to_str().unwrap(),
            "--format",
            "hermes",
        ],
        "",
    );
    assert!(text(&out.stdout).contains("\"<tool_call>\""));
}

#[test]
fn call_generates_a_valid_constrained_call() {
    let tools = tools_file();
    let out = k2(
        &[
            "call",
            "--tools",
            tools.path().to_str().unwrap(),
            "What is the weather in Oslo?",
        ],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let calls = v["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["name"], "get_weather");
    assert!(calls[0]["arguments"]["city"].is_string());
}

#[test]
fn validate_answers_one_line_per_input_line() {
    let input = [
        r#"{"parameters": {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0}}, "required": ["n"]}, "arguments": {"n": 3}}"#,
        r#"{"parameters": {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0}}, "required": ["n"]}, "arguments": {"n": -1}}"#,
        r#"{"parameters": {"type": "object", "required": ["a", "b"]}, "arguments": {}}"#,
        r#"{"parameters": {"type": "object", "properties": {"d": {"type": "string", "format": "date"}}}, "arguments": {"d": "yesterday"}}"#,
        r#"not json"#,
        r#"{"parameters": {"type": 12}, "arguments": {}}"#,
    ]
    .join("\n");
    let out = k2(&["validate"], &input);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6);
    assert_eq!(lines[0], serde_json::json!({"valid": true, "errors": []}));
    assert_eq!(lines[1]["valid"], false);
    assert_eq!(
        lines[1]["errors"][0],
        "at /n: -1 is less than the minimum of 0"
    );
    assert_eq!(lines[2]["errors"].as_array().unwrap().len(), 2);
    assert_eq!(lines[3]["valid"], false, "formats are checked");
    assert!(lines[4]["errors"][0].as_str().unwrap().contains("not JSON"));
    assert!(lines[5]["errors"][0]
        .as_str()
        .unwrap()
        .contains("invalid schema"));
}

#[path = "../k2-model/tests/support/tiny_k2.rs"]
mod tiny_k2;

fn events(out: &Output) -> Vec<serde_json::Value> {
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn run_drives_an_agent_and_resumes_it_from_its_journal() {
    let model = tiny_k2::path();
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("run.jsonl");
    let journal = journal.to_str().unwrap();
    let run = |extra: &[&str]| {
        let mut a: Vec<&str> = vec![
            "run",
            "--model",
            model.to_str().unwrap(),
            "--tools",
            "calculator",
            "--tool-first",
            "--max-steps",
            "1",
            "--max-tokens",
            "400",
            "--json",
        ];
        a.extend_from_slice(extra);
        k2(&a, "")
    };
    let out = run(&["--journal", journal, "What is 6 * 7?"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let first = events(&out);
    let kinds: Vec<&str> = first.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"tool_call"), "{kinds:?}");
    assert!(kinds.contains(&"tool_finished"), "{kinds:?}");
    let done = first.last().unwrap();
    assert_eq!(done["type"], "finished");
    assert_eq!(done["outcome"]["stop"], "max_steps");
    assert_eq!(done["outcome"]["tools"][0]["call"]["name"], "calculator");

    // The journal holds the whole run: resuming it replays the outcome, running nothing.
    let out = run(&["--resume", journal]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let again = events(&out);
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(again[0]["outcome"], done["outcome"]);

    let out = k2(&["run", "--tools", "nope", "x"], "");
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("unknown built-in tool `nope`"));
}

#[test]
fn bench_quick_measures_everything_and_writes_its_report() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let run = k2(&["bench", "--quick", "--out", out], "");
    assert!(run.status.success(), "{}", text(&run.stderr));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap())
            .unwrap();
    let figures = report["figures"].as_array().unwrap();
    let names: Vec<&str> = figures
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    for expected in [
        "peak RSS",
        "prompt processing",
        "decode, ",
        "decode with a call grammar",
        "KV reuse over a 2-step run",
        "agent loop per step",
        "K2 parser",
        "4 parallel",
    ] {
        assert!(
            names.iter().any(|n| n.starts_with(expected)),
            "{expected} missing from {names:?}"
        );
    }
    // The end-to-end comparison runs where scripts/build-peers made its peers, and says
    // so where it could not.
    let notes = report["notes"].to_string();
    assert!(
        names.iter().any(|n| n.starts_with("2-step agent task"))
            || notes.contains("End to end skipped"),
        "{names:?} {notes}"
    );
    // Numbers, not timings: every figure was measured.
    for f in figures {
        assert!(f["value"].as_f64().is_some_and(f64::is_finite), "{f}");
    }
    assert!(std::fs::read_to_string(dir.path().join("report.md"))
        .unwrap()
        .contains("| measurement |"));
    assert_eq!(report["kv_steps"].as_array().map(Vec::len), Some(3));
    let png = std::fs::read(dir.path().join("report.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "report.png is not a PNG");
}
