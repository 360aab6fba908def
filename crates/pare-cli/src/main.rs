//! `pare`: compress neural networks and measure what it costs. This binary parses arguments, wires the
//! library crates together, reports progress on stderr and turns errors into one line and exit code 1.

mod bench;
mod common;
mod decoder;
mod decompress;
mod embed;
mod export;
mod hwbench;
mod inspect;
mod prune;
mod quantize;
mod report;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "pare", version, about = "Model compression that really shrinks and speeds up, measured")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Download a zoo model into the cache (pinned version, sha256-checked); prints its directory.
    Fetch {
        /// Zoo name: a model (all-minilm-l6-v2) or a data set (gensim-test-data, sotu).
        name: String,
    },
    /// Sentence embeddings, one text per input line, as JSON Lines.
    Embed {
        /// Model directory or zoo name.
        model: String,
        /// Input text file, one text per line (default: stdin).
        #[arg(long)]
        input: Option<PathBuf>,
        /// Output file (default: stdout); written atomically.
        #[arg(long)]
        output: Option<PathBuf>,
        /// Worker threads.
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=1024))]
        threads: u16,
    },
    /// Tensors (name, shape, dtype, bytes), totals, and how each layer is stored and run.
    Inspect {
        /// Model directory or zoo name.
        model: String,
        /// One JSON object on stdout instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Time the forward pass on `batch` copies of a fixed English text cut to `seq` tokens.
    Bench(bench::BenchArgs),
    /// Quantize a float model (int8 weights, embeddings and activations) into OUT_DIR.
    Quantize(quantize::QuantizeArgs),
    /// Prune a model (magnitude, wanda, sparsegpt, nm, structured) into OUT_DIR, stored packed.
    Prune(prune::PruneArgs),
    /// The compression report: build a sweep of variants, measure them side by side, analyse, and
    /// write report.md, report.json and report.html.
    Report(report::ReportArgs),
    /// Speed of every available kernel against this machine's measured peak.
    Hwbench(hwbench::HwbenchArgs),
    /// Continue a prompt with a decoder (GGUF), greedily, streaming the text to stdout.
    Generate {
        /// GGUF file, directory holding one, or zoo name.
        model: String,
        /// The prompt (no special tokens are added).
        #[arg(long)]
        prompt: String,
        /// Tokens to generate at most.
        #[arg(short = 'n', long = "tokens", default_value_t = 64)]
        tokens: usize,
        /// Worker threads.
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=1024))]
        threads: u16,
    },
    /// Perplexity of a decoder (GGUF) on a text file, in windows of `--ctx` tokens.
    Perplexity {
        /// GGUF file, directory holding one, or zoo name.
        model: String,
        /// The text (UTF-8).
        #[arg(long)]
        input: PathBuf,
        /// Tokens per window.
        #[arg(long, default_value_t = 1024)]
        ctx: usize,
        /// Use only the first N tokens of the text.
        #[arg(long)]
        tokens: Option<usize>,
        /// Worker threads.
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=1024))]
        threads: u16,
    },
    /// Two decoders (GGUF) over the same text in one pass: both perplexities, mean KL divergence and
    /// its percentiles, same top token, RMS Δp.
    Compare(decoder::CompareArgs),
    /// Write any model pare runs as a plain float32 model (weights dequantized and densified).
    Decompress {
        /// Model directory or zoo name.
        model: String,
        /// Output directory.
        #[arg(short, long)]
        output: PathBuf,
        /// Replace the output directory if it exists and is not empty.
        #[arg(long)]
        force: bool,
    },
    /// Write a BERT model as ONNX (float, or int8 as integer products), with its tokenizer files.
    Export {
        /// Model directory or zoo name.
        model: String,
        /// Output format.
        #[arg(long, value_enum, default_value = "onnx")]
        format: export::ExportFormat,
        /// Output directory.
        #[arg(short, long)]
        output: PathBuf,
        /// Replace the output directory if it exists and is not empty.
        #[arg(long)]
        force: bool,
        /// Write int8 weights as the float values they stand for.
        #[arg(long)]
        dequantize: bool,
    },
}

/// Parses the command line; usage errors become one line on stderr and exit code 2.
fn parse() -> Result<Cli, ExitCode> {
    use clap::error::ErrorKind;
    Cli::try_parse().map_err(|e| {
        if matches!(
            e.kind(),
            ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        ) {
            e.exit();
        }
        let text = e.render().to_string();
        let msg: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("For more information") && !l.starts_with("Usage:"))
            .collect();
        eprintln!("{}", msg.join(" "));
        ExitCode::from(2)
    })
}

fn main() -> ExitCode {
    let cli = match parse() {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Err(e) = pare_kernels::isa::cap_from_env() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    if let Err(e) = pare_models::weight::BlockActivations::from_env() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Command::Fetch { name } => common::fetch(&name),
        Command::Embed { model, input, output, threads } => {
            embed::run(&model, input.as_deref(), output.as_deref(), threads.into())
        }
        Command::Inspect { model, json } => inspect::run(&model, json),
        Command::Bench(args) => bench::run(&args),
        Command::Quantize(args) => quantize::run(&args),
        Command::Hwbench(args) => hwbench::run(&args),
        Command::Prune(args) => prune::run(&args),
        Command::Report(args) => report::run(&args),
        Command::Decompress { model, output, force } => decompress::run(&model, &output, force),
        Command::Export { model, format, output, force, dequantize } => {
            export::run(&model, format, &output, force, dequantize)
        }
        Command::Generate { model, prompt, tokens, threads } => {
            decoder::generate(&model, &prompt, tokens, threads.into())
        }
        Command::Compare(args) => decoder::compare(&args),
        Command::Perplexity { model, input, ctx, tokens, threads } => {
            decoder::perplexity(&model, &input, ctx, tokens, threads.into())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {msg}");
            ExitCode::from(1)
        }
    }
}
