//! Documentation generated from the command-line definitions: shell completions and the man
//! page. Packaging runs these on the build machine, so they need no config file.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::args::Cli;

/// The completion script for `shell`, as the shell's completion directory expects it.
pub fn completions(shell: Shell) -> Vec<u8> {
    let mut command = Cli::command();
    let name = command.get_name().to_owned();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, name, &mut script);
    script
}

/// The man page (section 1), in roff, dated `SOURCE_DATE_EPOCH` (reproducible builds) or today.
pub fn man_page() -> anyhow::Result<Vec<u8>> {
    let date = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(epoch) => epoch_date(&epoch)?,
        Err(_) => jiff::Timestamp::now(),
    };
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .date(date.strftime("%Y-%m-%d").to_string())
        .render(&mut page)
        .context("cannot render the man page")?;
    let page = String::from_utf8(page).context("the man page is not UTF-8")?;
    // clap_mangen separates an option's help from its possible values with `.br`, a blank
    // line and `.br`; that is a paragraph break, which linters want said as `.sp`.
    Ok(page.replace("\n.br\n\n.br\n", "\n.sp\n").into_bytes())
}

fn epoch_date(epoch: &str) -> anyhow::Result<jiff::Timestamp> {
    epoch
        .trim()
        .parse::<i64>()
        .ok()
        .and_then(|seconds| jiff::Timestamp::from_second(seconds).ok())
        .with_context(|| format!("SOURCE_DATE_EPOCH is not seconds since 1970: {epoch:?}"))
}

/// Writes `bytes` to stdout; a closed pipe (`| head`) is an error like any other.
pub fn print(bytes: &[u8]) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .context("cannot write to stdout")?;
    Ok(ExitCode::SUCCESS)
}
