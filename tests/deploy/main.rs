//! The deploy kit in `deploy/` and the packaging in `scripts/`, held to what
//! an operator relies on:
//!
//! - `install`: what `install.sh` prints and refuses before it touches a
//!   host (dry runs, hosts files, usage errors), and that the shell scripts
//!   are shellcheck-clean;
//! - `rollout`: `install.sh` host after host against stand-ins for ssh and
//!   scp: the build for each machine, and a failing host stopping the run;
//! - `unit`: `herd.service`'s hardening and `systemd-analyze verify`;
//! - `datadog`: the dashboard and the monitors, their metrics, and Datadog's
//!   own client models (`datadog_models.py`);
//! - `packaging`: `scripts/dist.sh`'s refusals, the Dockerfile and the
//!   Kubernetes manifests;
//! - `debian`: the Debian packages dist.sh makes (contents, lintian, the man
//!   page, the completions, the armhf binary on an ARM1176);
//! - `prometheus`: the alerting rules (one per Datadog monitor, plus a Pi
//!   Prometheus cannot scrape), their unit tests and the example scrape
//!   config, through `promtool`, and the metrics the rules name.
//!
//! Tests that need a tool this machine lacks (`systemd-analyze`,
//! `shellcheck`, Datadog's Python client, `promtool`, lintian, man, zsh,
//! fish, the packages in dist/) say so and skip,
//! except under CI (`CI=true`), where they fail: `.ci/run` installs them.

#[path = "../common/mod.rs"]
mod common;
mod harness;

mod datadog;
mod debian;
mod install;
mod packaging;
mod prometheus;
mod rollout;
mod unit;
