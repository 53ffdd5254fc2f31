//! `cloister`: the command-line tool of Cloister's users, hospital platform
//! teams, clinical apps, data owners and auditors: `verify` evidence,
//! `query` an attested enclave, `measure` an image, `seal`/`unseal`
//! bundles, run the key broker (`kbs`), build and test `policy` bundles,
//! verify, read and prove the `audit` log, and `demo` the whole flow.
//!
//! Exit codes: 0 success, 1 rejection (attestation refused, bundle
//! rejected), 2 usage error or unreadable input; `query` adds 3
//! (unreachable) and 4 (request refused).

mod audit;
mod corpus;
mod demo;
mod image;
mod kbs;
mod measure;
mod policy;
mod query;
mod seal;
mod verify;

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Cloister: confidential clinical AI you can verify.
#[derive(Debug, Parser)]
#[command(name = "cloister", version, about, propagate_version = true)]
struct Cli {
    /// More log output on stderr (-v debug, -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Verify SEV-SNP or TDX attestation evidence and appraise it against a policy.
    Verify(verify::VerifyArgs),
    /// Attest an enclave, prove it is live, and ask it a question.
    Query(query::QueryArgs),
    /// Compute the launch measurement an enclave image will report.
    Measure(measure::MeasureArgs),
    /// Build and inspect reproducible enclave VM images.
    Image(image::ImageArgs),
    /// Seal a file into a bundle the untrusted host can store but not read.
    // `--version` is the bundle version here, as the data owner's scripts write it.
    #[command(disable_version_flag = true)]
    Seal(seal::SealArgs),
    /// Unseal a bundle with its key (the data owner's own check).
    Unseal(seal::UnsealArgs),
    /// The key broker: release keys only to attested, approved enclaves.
    Kbs(kbs::KbsArgs),
    /// Build, hash, test and evaluate policy bundles.
    Policy(policy::PolicyArgs),
    /// Verify, read, search, export and prove the enclave's audit log.
    Audit(audit::AuditArgs),
    /// Build the guideline corpus answers are grounded in.
    Corpus(corpus::CorpusArgs),
    /// Run the whole flow on this machine (INSECURE simulated TEE).
    Demo(demo::DemoArgs),
}

/// Runs a subcommand whose failures are usage errors (exit 2).
fn usage_on_error(name: &str, outcome: anyhow::Result<ExitCode>) -> ExitCode {
    outcome.unwrap_or_else(|e| {
        eprintln!("cloister {name}: {e:#}");
        ExitCode::from(EXIT_USAGE)
    })
}

/// Exit status for usage errors and unreadable files (clap uses it too).
pub(crate) const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => tracing::Level::WARN,
        1 => tracing::Level::DEBUG,
        _ => tracing::Level::TRACE,
    };
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match cli.command {
        Command::Verify(args) => match verify::run(&args) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("cloister verify: {e:#}");
                ExitCode::from(EXIT_USAGE)
            }
        },
        Command::Query(args) => match query::run(&args) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("cloister query: {e:#}");
                ExitCode::from(EXIT_USAGE)
            }
        },
        Command::Measure(args) => match measure::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("cloister measure: {e:#}");
                ExitCode::from(EXIT_USAGE)
            }
        },
        Command::Seal(args) => usage_on_error("seal", seal::run_seal(&args)),
        Command::Unseal(args) => usage_on_error("unseal", seal::run_unseal(&args)),
        Command::Kbs(args) => usage_on_error("kbs", kbs::run(&args)),
        Command::Policy(args) => usage_on_error("policy", policy::run(&args)),
        Command::Audit(args) => usage_on_error("audit", audit::run(&args)),
        Command::Corpus(args) => usage_on_error("corpus", corpus::run(&args)),
        Command::Image(args) => usage_on_error("image", image::run(&args)),
        Command::Demo(args) => match demo::run(&args) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("cloister demo: {e:#}");
                ExitCode::from(1)
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    #[test]
    fn the_command_line_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
