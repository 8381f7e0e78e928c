// SPDX-License-Identifier: GPL-2.0
//! `cargo xtask series-build`: build every prefix of the series in turn.
//!
//! Each patch of an mm series must build on its own, so that bisection
//! works. The prefixes are built one after the other in a working tree and
//! a build folder of their own, incrementally: the tree is reset to the
//! baseline and the first `k` patches applied, keeping the modification
//! time of every file whose content did not change, then the test kernel
//! is configured and built.

use std::time::Instant;

use crate::apply::reapply_prefix;
use crate::build::{self, Flavour};
use crate::series;
use crate::tree::worktree;
use crate::util::{repo_root, stage, Result};

/// How many lines of a failed build's log to show.
const LOG_TAIL: usize = 25;

/// Builds the prefixes `from..=to` (1-based; all by default) and reports
/// each; true if every one built without a warning.
pub fn series_build(from: Option<usize>, to: Option<usize>) -> Result<bool> {
    let repo = repo_root();
    let entries = series::load(&repo)?;
    let n = entries.len();
    let from = from.unwrap_or(1).max(1);
    let to = to.unwrap_or(n).min(n);
    let tree = stage("kernel tree", || worktree("series"))?;
    let out = build::build_dir(Flavour::Series);
    let mut report = Vec::new();
    for k in from..=to {
        let name = entries[k - 1].patch.trim_end_matches(".patch").to_string();
        eprintln!("==> prefix {k}/{n}: {name}");
        let t0 = Instant::now();
        let result = reapply_prefix(&tree, &repo, k)
            .and_then(|_| build::configure(&tree, &repo, Flavour::Series))
            .and_then(|_| build::build_kernel(&tree, &out));
        let secs = t0.elapsed().as_secs();
        let log = std::fs::read_to_string(out.join("build.log")).unwrap_or_default();
        let warnings: Vec<&str> = log.lines().filter(|l| l.contains("warning:")).collect();
        match &result {
            Ok(_) => {
                eprintln!(
                    "<== prefix {k}/{n}: built in {secs} s, {} warnings",
                    warnings.len()
                );
                for w in &warnings {
                    eprintln!("    {w}");
                }
            }
            Err(e) => {
                eprintln!("<== prefix {k}/{n}: FAILED after {secs} s: {e}");
                let lines: Vec<&str> = log.lines().collect();
                for l in &lines[lines.len().saturating_sub(LOG_TAIL)..] {
                    eprintln!("    {l}");
                }
            }
        }
        report.push((k, name, result.is_ok(), warnings.len(), secs));
    }
    println!("prefix | patch | result | warnings | seconds");
    for (k, name, ok, warnings, secs) in &report {
        let r = if *ok { "built" } else { "FAILED" };
        println!("{k:>6} | {name} | {r} | {warnings} | {secs}");
    }
    // A prefix that builds with warnings is not clean either.
    let failed = report.iter().filter(|r| !r.2 || r.3 > 0).count();
    println!(
        "prefixes: {} built clean, {failed} failed or warned (tree and build in the cache, `series`)",
        report.len() - failed
    );
    Ok(failed == 0)
}
