// SPDX-License-Identifier: GPL-2.0
//! `cargo xtask export`: the series, Rust included, as `git format-patch`
//! files that `git am` onto a pristine 7.3 tree.

use std::path::Path;
use std::process::Command;

use crate::apply::apply_entry;
use crate::bail;
use crate::series;
use crate::tree::{ident, worktree, PRISTINE};
use crate::util::{output, repo_root, run, Result};

/// Commits each series entry on a fresh branch from the baseline and
/// formats the commits into `out`. Returns the number of patches.
pub fn export(out: &Path) -> Result<usize> {
    let repo = repo_root();
    let entries = series::load(&repo)?;
    let unlisted = series::unlisted_sources(&repo, &entries);
    if !unlisted.is_empty() {
        bail!(
            "these sources are introduced by no patch in patches/series: {}",
            unlisted.join(", ")
        );
    }
    let tree = worktree("export")?;
    let git = |args: &[&str]| run(Command::new("git").arg("-C").arg(&tree).args(args));
    git(&["checkout", "-q", "-f", "--detach", PRISTINE])?;
    git(&["clean", "-q", "-f", "-d", "-x"])?;
    for e in &entries {
        let mail = std::fs::read_to_string(repo.join("patches").join(&e.patch))?;
        apply_entry(&tree, &repo, e)?;
        git(&["add", "-A", "-f"])?;
        if output(
            Command::new("git")
                .arg("-C")
                .arg(&tree)
                .args(["status", "--porcelain"]),
        )?
        .trim()
        .is_empty()
        {
            bail!("patches/{} changes nothing", e.patch);
        }
        let msg = series::commit_message(&mail)
            .map_err(|err| crate::util::Error(format!("patches/{}: {err}", e.patch)))?;
        let msg_file = tree.join(".git-export-msg");
        let mut args = ident(&["commit", "-q", "-F"]);
        let msg_path = msg_file.to_string_lossy().into_owned();
        args.push(&msg_path);
        let author = mail
            .lines()
            .find_map(|l| l.strip_prefix("From: "))
            .map(str::to_string);
        let author_arg;
        if let Some(a) = author {
            author_arg = format!("--author={a}");
            args.push(&author_arg);
        }
        std::fs::write(&msg_file, msg)?;
        // The message file is outside the index: commit before removing it.
        let r = git(&args);
        let _ = std::fs::remove_file(&msg_file);
        r?;
    }
    std::fs::create_dir_all(out)?;
    for old in std::fs::read_dir(out)?.flatten() {
        if old.file_name().to_string_lossy().ends_with(".patch") {
            std::fs::remove_file(old.path())?;
        }
    }
    let files = output(
        Command::new("git")
            .arg("-C")
            .arg(&tree)
            .args(["format-patch", "-o"])
            .arg(std::path::absolute(out)?)
            .arg(format!("{PRISTINE}..HEAD")),
    )?;
    let n = files.lines().count();
    for f in files.lines() {
        println!("{f}");
    }
    if n != entries.len() {
        bail!(
            "format-patch wrote {n} patches for {} series entries",
            entries.len()
        );
    }
    Ok(n)
}
