//! `k2 bench`: k2 measured side by side with its peers in one run, reported as ratios.
//!
//! Each figure is a median over repeated runs (the best run is kept too), next to a reference
//! measured in the same run where there is one, with the target the issue tracker set.
//! Results go to `target/bench/report.json`, `report.md` (the table) and `report.png` (the
//! chart).

mod agent;
mod chart;
mod e2e;
mod engine;
mod server;

use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

/// Options of `k2 bench`.
#[derive(Args)]
pub struct BenchArgs {
    /// Small sizes and one repetition: checks that every measurement runs (for CI), not how
    /// fast.
    #[arg(long)]
    quick: bool,
    /// Repetitions of each measurement (k2 and its reference take turns).
    #[arg(long, default_value_t = 7)]
    repeat: usize,
    /// Threads for k2 and llama-bench alike (default: physical cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Where llama-bench lives (default: what `scripts/build-peers` built; skipped if absent).
    #[arg(long)]
    peers: Option<PathBuf>,
    /// Run only these measurements (comma-separated): memory, raw, grammar, kv, loop,
    /// parser, parallel, e2e.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Output directory.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
}

/// One measured figure.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// What was measured.
    pub name: String,
    /// k2's median.
    pub value: f64,
    /// k2's best run.
    pub best: f64,
    /// The unit.
    pub unit: String,
    /// The reference's median, when there is one.
    pub reference: Option<f64>,
    /// `value / reference` (or the figure itself when it is already a ratio).
    pub ratio: Option<f64>,
    /// The target, in words (`>= 0.97`, `< 100 µs`).
    pub target: String,
    /// Whether the target is met.
    pub met: Option<bool>,
}

/// Median and best (lowest) of a sample of costs: times, ratios of times.
pub fn stats(mut xs: Vec<f64>) -> (f64, f64) {
    xs.sort_by(|a, b| a.total_cmp(b));
    let median = xs.get(xs.len() / 2).copied().unwrap_or(f64::NAN);
    (median, xs.first().copied().unwrap_or(f64::NAN))
}

/// Median and best (highest) of a sample of rates: tok/s, MB/s.
pub fn rate_stats(xs: Vec<f64>) -> (f64, f64) {
    let (median, _) = stats(xs.clone());
    (median, xs.into_iter().fold(f64::NAN, f64::max))
}

/// What the measurements share.
pub struct Setup {
    pub model: PathBuf,
    pub threads: usize,
    pub repeat: usize,
    pub quick: bool,
    pub peers: Option<PathBuf>,
    /// Where the report and any side files go.
    pub out: PathBuf,
}

impl Setup {
    /// Scales a size down in quick mode.
    pub fn size(&self, full: usize, quick: usize) -> usize {
        if self.quick {
            quick
        } else {
            full
        }
    }
}

/// Runs every measurement and writes the report.
pub async fn run(model: PathBuf, args: BenchArgs) -> Result<(), Box<dyn std::error::Error>> {
    let peers = args.peers.clone().or_else(default_peers);
    let setup = Setup {
        model,
        threads: args.threads.unwrap_or_else(k2::model::default_threads),
        repeat: if args.quick { 1 } else { args.repeat.max(1) },
        quick: args.quick,
        out: args.out.clone(),
        peers,
    };
    std::fs::create_dir_all(&setup.out)?;
    let mut figures = Vec::new();
    let mut notes = Vec::new();
    let wants = |name: &str| args.only.is_empty() || args.only.iter().any(|o| o == name);
    // Memory first: the peak is the process's high-water mark so far.
    if wants("memory") {
        engine::memory(&setup, &mut figures).await?;
    }
    if wants("raw") {
        engine::raw_speed(&setup, &mut figures, &mut notes).await?;
    }
    if wants("grammar") {
        engine::grammar_cost(&setup, &mut figures).await?;
    }
    let mut kv_steps = Vec::new();
    if wants("kv") {
        kv_steps = agent::kv_reuse(&setup, &mut figures).await?;
    }
    if wants("loop") {
        agent::loop_overhead(&setup, &mut figures).await?;
    }
    if wants("parser") {
        agent::parser_throughput(&setup, &mut figures);
    }
    if wants("parallel") {
        agent::parallel_tools(&setup, &mut figures).await?;
    }
    if wants("e2e") {
        e2e::end_to_end(&setup, &mut figures, &mut notes).await?;
    }

    let report = serde_json::json!({
        "model": setup.model,
        "threads": setup.threads,
        "repeat": setup.repeat,
        "quick": setup.quick,
        "notes": notes,
        "figures": figures,
        "kv_steps": kv_steps,
    });
    std::fs::write(
        args.out.join("report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    let table = markdown(&figures, &notes);
    std::fs::write(args.out.join("report.md"), &table)?;
    print!("{table}");
    chart::draw(&args.out.join("report.png"), &figures, &kv_steps)?;
    eprintln!(
        "wrote report.json, report.md and report.png in {}",
        args.out.display()
    );
    Ok(())
}

/// What `scripts/build-peers` built, if it did.
fn default_peers() -> Option<PathBuf> {
    let peers = k2::model::Resolver::from_env().cache_dir().join("peers");
    std::fs::read_dir(peers)
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin"))
        .find(|bin| bin.join("llama-bench").exists())
}

fn markdown(figures: &[Figure], notes: &[String]) -> String {
    let n = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
    let mut s = String::from(
        "| measurement | k2 (median) | best | reference | ratio | target | met |\n|---|---|---|---|---|---|---|\n",
    );
    for f in figures {
        s.push_str(&format!(
            "| {} | {:.3} {} | {:.3} | {} | {} | {} | {} |\n",
            f.name,
            f.value,
            f.unit,
            f.best,
            n(f.reference),
            n(f.ratio),
            f.target,
            match f.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "-",
            }
        ));
    }
    for note in notes {
        s.push_str(&format!("\n{note}\n"));
    }
    s
}
