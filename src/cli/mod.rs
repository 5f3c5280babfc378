//! Command-line interface: argument types and one module per subcommand.
//!
//! `main.rs` parses [`Cli`] and calls [`run`]; each subcommand module turns
//! arguments into library calls and prints a short human summary. Errors are
//! returned, never printed here: the binary reports them once.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::error::Result;

pub mod demo;
pub mod encode;
pub mod evaluate;
pub mod inspect;
pub mod link;
pub mod release;
pub mod report;
pub mod synth;

/// Privacy-preserving record linkage across agencies.
#[derive(Parser, Debug)]
#[command(name = "bloomlink", version, about, long_about = None)]
pub struct Cli {
    /// More log output (-v info, -vv debug). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors; no progress bars.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Worker threads (default: one per core; RAYON_NUM_THREADS also sets it).
    #[arg(short = 'j', long, global = true, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Agency side: encode a plaintext extract into Bloom filters.
    Encode(EncodeArgs),
    /// Hub side: link two or more extracts (or deduplicate one).
    Link(LinkArgs),
    /// Precision, recall and F1 of links against a truth file (JSON).
    Evaluate(EvaluateArgs),
    /// Print an extract's metadata and counts (never its filters).
    Inspect(InspectArgs),
    /// Re-render report.html from report.json (optionally with a truth file).
    Report(ReportArgs),
    /// Analysts' release: entity pseudonyms plus payload, no identifiers.
    Release(ReleaseArgs),
    /// Write synthetic plaintext agency extracts with truth (for testing).
    Synth(SynthArgs),
    /// Run the whole flow on synthetic data: synth, encode, link, report.
    Demo(DemoArgs),
}

/// Arguments of `bloomlink report`.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// A link output folder holding report.json.
    pub dir: PathBuf,
    /// Truth CSV, to add true precision and recall.
    #[arg(long)]
    pub truth: Option<PathBuf>,
}

/// Arguments of `bloomlink release`.
#[derive(Args, Debug)]
pub struct ReleaseArgs {
    /// links.parquet from a link run.
    #[arg(long)]
    pub links: PathBuf,
    /// AGENCY=PAYLOAD.parquet; repeat per agency.
    #[arg(long)]
    pub payload: Vec<String>,
    /// The analysis file to write (a manifest is written beside it).
    #[arg(long)]
    pub out: PathBuf,
    /// A payload column to release although it looks identifying.
    #[arg(long)]
    pub allow_column: Vec<String>,
}

/// Arguments of `bloomlink demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Folder for the demo (default: bloomlink-demo in the system temp folder).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// People in the synthetic population.
    #[arg(long, default_value_t = 4000)]
    pub people: usize,
    /// Agencies.
    #[arg(long, default_value_t = 3)]
    pub agencies: usize,
    /// Random seed.
    #[arg(long, default_value_t = 2026)]
    pub seed: u64,
}

/// Arguments of `bloomlink synth`.
#[derive(Args, Debug)]
pub struct SynthArgs {
    /// Number of people in the population.
    #[arg(long)]
    pub people: usize,
    /// Number of agencies (extracts).
    #[arg(long, default_value_t = 3)]
    pub agencies: usize,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Random seed (same seed, same files).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Probability that a person appears in each agency.
    #[arg(long, default_value_t = 0.6)]
    pub overlap: f64,
}

/// Arguments of `bloomlink link`.
#[derive(Args, Debug)]
pub struct LinkArgs {
    /// An agency extract; repeat for each agency.
    #[arg(long, required_unless_present_any = ["merge", "unit"])]
    pub extract: Vec<PathBuf>,
    /// Output folder for links.parquet, pairs.parquet, report.json, report.html.
    #[arg(long, required_unless_present_any = ["plan"])]
    pub out: Option<PathBuf>,
    /// Job config (TOML); defaults suit two extracts.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Threshold: match probability (probabilistic) or Dice (dice mode).
    #[arg(long)]
    pub threshold: Option<f64>,
    /// Also link records within an extract (deduplicate).
    #[arg(long)]
    pub dedup: bool,
    /// Truth CSV, to report true precision and recall.
    #[arg(long)]
    pub truth: Option<PathBuf>,
    /// A previous link output folder: keep its entity ids for the same people,
    /// and compare only records that are new or changed since it.
    #[arg(long)]
    pub previous: Option<PathBuf>,
    /// With --previous: link every record again instead of only what changed.
    #[arg(long, requires = "previous")]
    pub full: bool,
    /// Score with the model a previous run fitted (its output folder) instead
    /// of fitting one: an approved model stays fixed across refreshes.
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// Scale-out: write a plan of work units to DIR instead of linking
    /// (with --unit I: run unit I of the plan in DIR).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["merge", "previous", "truth", "out"])]
    pub plan: Option<PathBuf>,
    /// Scale-out: the unit of --plan DIR to run, or a range I-J of units
    /// (run one after another on one load of the extracts).
    #[arg(long, value_name = "I[-J]", requires = "plan", value_parser = parse_units)]
    pub unit: Option<(usize, usize)>,
    /// Scale-out: merge the units of the plan in DIR and write the outputs to --out.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["extract", "config", "dedup", "threshold", "model", "previous"])]
    pub merge: Option<PathBuf>,
}

/// `I` or `I-J` (inclusive).
fn parse_units(s: &str) -> std::result::Result<(usize, usize), String> {
    let num = |x: &str| {
        x.trim()
            .parse::<usize>()
            .map_err(|_| format!("`{s}`: give a unit number I or a range I-J"))
    };
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (num(a)?, num(b)?);
            if a > b {
                return Err(format!("`{s}`: the range is empty"));
            }
            Ok((a, b))
        }
        None => num(s).map(|i| (i, i)),
    }
}

/// Arguments of `bloomlink evaluate`.
#[derive(Args, Debug)]
pub struct EvaluateArgs {
    /// links.parquet from a link run.
    #[arg(long)]
    pub links: PathBuf,
    /// Truth CSV: `record_id_a,record_id_b` or `agency,record_id,entity`.
    #[arg(long)]
    pub truth: PathBuf,
    /// The run's pairs.parquet, to tell where the missed true pairs went
    /// (the `report.json` beside it gives the threshold); default: the one
    /// beside --links.
    #[arg(long)]
    pub pairs: Option<PathBuf>,
}

/// Arguments of `bloomlink encode`.
#[derive(Args, Debug)]
pub struct EncodeArgs {
    /// Linkage schema: native `.toml` or clkhash v3 `.json`.
    #[arg(long)]
    pub schema: PathBuf,
    /// File holding the shared secret (else the BLOOMLINK_SECRET variable).
    #[arg(long)]
    pub secret_file: Option<PathBuf>,
    /// Plaintext input: CSV or Parquet.
    #[arg(long)]
    pub input: PathBuf,
    /// Extract to write (Parquet). Rejects go to OUT.rejects.csv beside it.
    #[arg(long)]
    pub output: PathBuf,
    /// Agency name recorded in the extract.
    #[arg(long)]
    pub agency: String,
    /// Non-identifying columns to copy to the payload file (comma separated).
    #[arg(long, value_delimiter = ',')]
    pub payload_columns: Vec<String>,
    /// Payload file (Parquet), keyed by record id.
    #[arg(long)]
    pub payload_output: Option<PathBuf>,
    /// CSV separator: one character, or `tab` (default `,`, a tab for .tsv).
    #[arg(long, value_parser = parse_delimiter)]
    pub delimiter: Option<u8>,
    /// CSV text encoding, e.g. windows-1252 for a CSV saved by Excel
    /// (default utf-8).
    #[arg(long, value_parser = parse_encoding, default_value = "utf-8")]
    pub encoding: &'static encoding_rs::Encoding,
}

/// A CSV separator: one ASCII character other than a quote or line break,
/// or `tab`.
fn parse_delimiter(s: &str) -> std::result::Result<u8, String> {
    match s {
        "tab" | "\\t" | "\t" => Ok(b'\t'),
        _ if s.len() == 1 && s.is_ascii() && !matches!(s, "\"" | "\n" | "\r") => {
            Ok(s.as_bytes()[0])
        }
        _ => Err(format!(
            "`{s}` is not a separator: give one character such as `;` or `|`, or `tab`"
        )),
    }
}

fn parse_encoding(s: &str) -> std::result::Result<&'static encoding_rs::Encoding, String> {
    crate::agency::CsvFormat::encoding_for(s)
}

/// Arguments of `bloomlink inspect`.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// The extract to describe.
    pub file: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Set up logging on stderr from -v/-q and RUST_LOG.
pub fn init_logging(verbose: u8, quiet: bool) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let level = if quiet {
        "error"
    } else {
        match verbose {
            0 => "warn",
            1 => "info",
            _ => "debug",
        }
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only for a terminal: a log piped to a file stays plain.
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_target(false)
        .without_time()
        .try_init();
    crate::progress::set_quiet(quiet);
}

/// Run a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    init_logging(cli.verbose, cli.quiet);
    if let Some(n) = cli.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n.into())
            .build_global()
            .map_err(|e| crate::error::Error::Runtime(format!("cannot start {n} threads: {e}")))?;
    }
    let progress = !cli.quiet;
    match cli.command {
        Command::Encode(a) => encode::run(a, progress),
        Command::Link(a) => link::run(a, progress),
        Command::Evaluate(a) => evaluate::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Synth(a) => synth::run(a),
        Command::Report(a) => report::run(a),
        Command::Release(a) => release::run(a),
        Command::Demo(a) => demo::run(a, progress),
    }
}
