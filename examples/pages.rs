//! The man page and the shell completions of `herd`, generated from its
//! clap definition (`herd::cli`) at build time, so the agent carries neither.
//!
//!     cargo run --example pages -- OUT_DIR
//!
//! writes `OUT_DIR/herd.1` (one page: the options of every subcommand, the
//! files, the environment, the exit codes) and `OUT_DIR/completions/`
//! `herd.bash`, `_herd` (zsh) and `herd.fish`. `scripts/dist.sh` runs it for
//! the Debian packages.

use std::fs;
use std::io::Write;
use std::path::PathBuf;

use clap::{Arg, ArgAction, CommandFactory};
use clap_complete::Shell;
use clap_mangen::Man;
use clap_mangen::roff::{Roff, bold, italic, roman};

fn main() -> anyhow::Result<()> {
    let out = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .ok_or_else(|| anyhow::anyhow!("usage: pages OUT_DIR"))?;
    fs::create_dir_all(out.join("completions"))?;
    let page = man_page()?;
    fs::write(out.join("herd.1"), page)?;
    for (shell, file) in [(Shell::Bash, "herd.bash"), (Shell::Zsh, "_herd"), (Shell::Fish, "herd.fish")] {
        let mut text = Vec::new();
        clap_complete::generate(shell, &mut herd::cli::Cli::command(), "herd", &mut text);
        fs::write(out.join("completions").join(file), text)?;
    }
    println!("{}", out.display());
    Ok(())
}

/// herd(1): the clap-rendered head (name, synopsis, description, options),
/// then the commands with their options, and the sections clap knows nothing
/// of.
fn man_page() -> anyhow::Result<Vec<u8>> {
    let mut cmd = herd::cli::Cli::command();
    cmd.build();
    // The version line without the build's triple and git revision: the page
    // is the same for every architecture.
    let cmd = cmd.version(env!("CARGO_PKG_VERSION"));
    let man =
        Man::new(cmd.clone()).manual("herd manual").source(format!("herd {}", env!("CARGO_PKG_VERSION")));
    let mut w = Vec::new();
    man.render_title(&mut w)?;
    man.render_name_section(&mut w)?;
    man.render_synopsis_section(&mut w)?;
    man.render_description_section(&mut w)?;
    man.render_options_section(&mut w)?;
    commands(&cmd, &mut w)?;
    fixed_sections(&mut w)?;
    Ok(w)
}

/// COMMANDS: each subcommand's usage, what it does and its options.
fn commands(cmd: &clap::Command, w: &mut dyn Write) -> std::io::Result<()> {
    let mut roff = Roff::new();
    roff.control("SH", ["COMMANDS"]);
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let mut usage = vec![bold(format!("herd {}", sub.get_name()))];
        for arg in options(sub) {
            usage.push(roman(" ["));
            usage.extend(flag(arg, true));
            usage.push(roman("]"));
        }
        roff.control("TP", []);
        roff.text(usage);
        let about = sub.get_long_about().or(sub.get_about()).map(|a| a.to_string()).unwrap_or_default();
        roff.text([roman(sentence(about))]);
        for arg in options(sub) {
            roff.control("RS", []);
            roff.control("TP", []);
            roff.text(flag(arg, false));
            let mut help =
                sentence(arg.get_long_help().or(arg.get_help()).map(|h| h.to_string()).unwrap_or_default());
            let defaults: Vec<_> =
                arg.get_default_values().iter().map(|v| v.to_string_lossy().into_owned()).collect();
            let says_default = help.to_lowercase().contains("default");
            if !defaults.is_empty() && !says_default && !matches!(arg.get_action(), ArgAction::SetTrue) {
                help.push_str(&format!(" Default: {}.", defaults.join(", ")));
            }
            roff.text([roman(help)]);
            roff.control("RE", []);
        }
    }
    roff.to_writer(w)
}

/// A subcommand's own options (not -h).
fn options(sub: &clap::Command) -> impl Iterator<Item = &Arg> {
    sub.get_arguments().filter(|a| a.get_id() != "help" && !a.is_hide_set())
}

/// clap's help lines drop their final period; the page's are sentences.
fn sentence(mut text: String) -> String {
    let closed = text.ends_with(['.', ':']) || (text.ends_with(')') && text.ends_with(".)"));
    if !text.is_empty() && !closed {
        text.push('.');
    }
    text
}

/// `-c, --config PATH` (or in a usage line, the short form alone: `-c PATH`)
/// in roff: names bold, the value italic.
fn flag(arg: &Arg, short_only: bool) -> Vec<clap_mangen::roff::Inline> {
    let mut names = Vec::new();
    if let Some(s) = arg.get_short() {
        names.push(format!("-{s}"));
    }
    if let Some(l) = arg.get_long().filter(|_| !short_only || names.is_empty()) {
        names.push(format!("--{l}"));
    }
    let mut out = vec![bold(names.join(", "))];
    if arg.get_action().takes_values() {
        let value = arg
            .get_value_names()
            .and_then(|v| v.first())
            .map(|v| v.to_string())
            .unwrap_or_else(|| arg.get_id().as_str().to_uppercase());
        out.push(roman(" "));
        out.push(italic(value));
    }
    out
}

/// FILES, ENVIRONMENT, EXIT STATUS and SEE ALSO: what the operator of a Pi
/// looks for beside the options.
fn fixed_sections(w: &mut dyn Write) -> std::io::Result<()> {
    let mut roff = Roff::new();
    let entry = |roff: &mut Roff, term: &str, text: &str| {
        roff.control("TP", []);
        roff.text([bold(term)]);
        roff.text([roman(text)]);
    };
    roff.control("SH", ["FILES"]);
    entry(
        &mut roff,
        herd::config::SYSTEM_CONFIG,
        "The config, read when no -c or HERD_CONFIG is given; every key, its default and whether a reload \
         applies it are in the file the package installs. A conffile: upgrades keep local edits.",
    );
    entry(
        &mut roff,
        "/etc/herd/secret",
        "The cluster's gossip secret when [gossip] secret_file points to it: mode 0640, group herd-secret, \
         which the service joins.",
    );
    entry(
        &mut roff,
        "/var/lib/herd",
        "The agent's state (its counter reservations), so that a power cut of the whole cluster never sends \
         the baton counter back.",
    );
    entry(
        &mut roff,
        "/usr/lib/systemd/system/herd.service",
        "The hardened unit; customise it with systemctl edit herd.",
    );
    roff.control("SH", ["ENVIRONMENT"]);
    entry(&mut roff, "HERD_CONFIG", "The config file, when -c is not given.");
    entry(
        &mut roff,
        "STATE_DIRECTORY",
        "Set by systemd (StateDirectory=herd): where [node] state_dir defaults to.",
    );
    roff.control("SH", ["EXIT STATUS"]);
    entry(&mut roff, "0", "Success (herd run: left the cluster on SIGTERM or SIGINT).");
    entry(&mut roff, "1", "Any other failure, said on standard error.");
    entry(
        &mut roff,
        "78",
        "The config is invalid (EX_CONFIG): each problem is one line naming the key, the value and what is \
         allowed. A missing network is not a config error: herd run waits for one.",
    );
    roff.control("SH", ["EXAMPLES"]);
    for (what, line) in [
        (
            "Validate an edited config, then apply it in place:",
            "sudo herd check && sudo systemctl reload herd",
        ),
        ("The cluster as this Pi sees it:", "herd status --cluster"),
        ("The agent's log:", "journalctl -u herd"),
        ("A secret for the whole cluster:", "herd keygen > herd.secret"),
    ] {
        roff.control("PP", []);
        roff.text([roman(what)]);
        roff.control("RS", []);
        roff.control("PP", []);
        roff.text([bold(line)]);
        roff.control("RE", []);
    }
    roff.control("SH", ["SEE ALSO"]);
    roff.text([
        bold("systemctl"),
        roman("(1), "),
        bold("journalctl"),
        roman("(1), "),
        bold("systemd.exec"),
        roman(
            "(5); the herd documentation: docs/operating.md, docs/configuration.md, docs/metrics.md and \
               docs/troubleshooting.md in herd's source.",
        ),
    ]);
    roff.to_writer(w)
}
