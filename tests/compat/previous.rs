//! The previous release, named in `previous-release` beside this file, built
//! from git history for the tests that run it beside this one (main.rs here
//! on loopback, the fleet's rolling upgrade, which includes this file): a
//! worktree of its commit under `target/compat/<commit>`, built there once as
//! the static x86_64 release binary an operator would have deployed.
//!
//! Must not: touch this checkout's target directory or build (the old build
//! gets none of the cargo environment the tests run in).

use std::path::PathBuf;
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `commit` and `wire` of `tests/compat/previous-release`.
pub fn previous_release() -> (String, u8) {
    let text =
        std::fs::read_to_string(repo().join("tests/compat/previous-release")).expect("read previous-release");
    let table: toml::Table = text.parse().expect("previous-release is TOML");
    let commit = table["commit"].as_str().expect("commit = \"<hash>\"").to_owned();
    let wire = table["wire"].as_integer().expect("wire = <version>");
    (commit, u8::try_from(wire).expect("a wire version"))
}

/// The previous release's source tree (a worktree made by [`previous_build`]).
pub fn previous_tree() -> PathBuf {
    repo().join("target/compat").join(previous_release().0)
}

/// The previous release's static x86_64 `herd`, built (once) in a worktree
/// of its commit under `target/compat/<commit>`; or why it cannot be had
/// here (no such commit in history, no network for its crates).
pub fn previous_build() -> Result<PathBuf, String> {
    let (commit, _) = previous_release();
    let git = |args: &[&str]| Command::new("git").arg("-C").arg(repo()).args(args).output();
    let known =
        git(&["cat-file", "-e", &format!("{commit}^{{commit}}")]).map_err(|e| format!("no git: {e}"))?;
    if !known.status.success() {
        return Err(format!("commit {commit} is not in this clone's history (a shallow clone?)"));
    }
    let tree = previous_tree();
    let target = "x86_64-unknown-linux-musl";
    let bin = tree.join(format!("target/{target}/release/herd"));
    if bin.exists() {
        return Ok(bin);
    }
    if !tree.join("Cargo.toml").exists() {
        let _ = git(&["worktree", "prune"]);
        let out = git(&["worktree", "add", "--force", "--detach", &tree.display().to_string(), &commit])
            .map_err(|e| e.to_string())?;
        // Another test may have added it meanwhile.
        if !out.status.success() && !tree.join("Cargo.toml").exists() {
            return Err(format!("git worktree add failed: {}", String::from_utf8_lossy(&out.stderr)));
        }
    }
    eprintln!("building the previous release {commit} in {} (once)", tree.display());
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    // Only the worktree's own settings: none of the cargo environment the
    // tests run in (target directory, package variables, and this build's
    // HERD_GIT_REV, which the old build script would take for its own).
    for (key, _) in std::env::vars() {
        if key.starts_with("CARGO_") && key != "CARGO_HOME" || key.starts_with("HERD_") || key == "RUSTFLAGS"
        {
            cargo.env_remove(key);
        }
    }
    // Cargo's lock on the worktree's target directory serialises two tests
    // building at once.
    let out = cargo
        .current_dir(&tree)
        .args(["build", "--locked", "--release", "--bin", "herd", "--target", target])
        .output()
        .map_err(|e| format!("cargo: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(8).collect();
        return Err(format!(
            "cargo build of {commit} failed:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ));
    }
    Ok(bin)
}
