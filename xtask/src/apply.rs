// SPDX-License-Identifier: GPL-2.0
//! Applying the series to a kernel tree: copy the Rust sources each patch
//! introduces, then apply its diff. A patch that does not apply fails with
//! its name and git's explanation.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use crate::bail;
use crate::module_index;
use crate::series::{self, Entry};
use crate::tree::PRISTINE;
use crate::util::{output, run, Context, Result};

/// Applies the whole series to any 7.3 tree (`cargo xtask apply --tree`).
pub fn apply_to(tree: &Path, repo: &Path) -> Result<usize> {
    apply_prefix(tree, repo, usize::MAX)
}

/// Applies the first `count` patches of the series to a 7.3 tree.
pub fn apply_prefix(tree: &Path, repo: &Path, count: usize) -> Result<usize> {
    if !tree.join("mm/migrate_device.c").exists() {
        bail!(
            "{} is not a Linux tree (no mm/migrate_device.c)",
            tree.display()
        );
    }
    let version = crate::tree::kernel_version(tree)?;
    if !version.starts_with("7.3.") {
        bail!(
            "{} is Linux {version}; the series is for 7.3",
            tree.display()
        );
    }
    let entries = series::load(repo)?;
    for f in series::unlisted_sources(repo, &entries) {
        eprintln!("    note: {f} is introduced by no patch in patches/series; not applied");
    }
    let count = count.min(entries.len());
    for e in &entries[..count] {
        apply_entry(tree, repo, e)?;
    }
    Ok(count)
}

/// Applies one series entry.
pub fn apply_entry(tree: &Path, repo: &Path, e: &Entry) -> Result<()> {
    for add in &e.adds {
        let src = repo.join(add);
        if !src.exists() {
            bail!(
                "patches/series: {} adds {add}, which does not exist",
                e.patch
            );
        }
        copy_tree(&src, add, &tree.join(series::tree_path(add)?))?;
    }
    // Each module index declares the modules added so far.
    for index in module_index::index_files(repo) {
        let dst = tree.join(series::tree_path(&index)?);
        let added = e
            .adds
            .iter()
            .any(|a| index == *a || index.starts_with(&format!("{a}/")));
        if added || dst.exists() {
            module_index::render(repo, &index, &dst)?;
        }
    }
    let patch = repo.join("patches").join(&e.patch);
    let mail =
        std::fs::read_to_string(&patch).context(|| format!("cannot read {}", patch.display()))?;
    if !series::has_diff(&mail) {
        return Ok(());
    }
    let out = Command::new("git")
        .current_dir(tree)
        .args(["apply", "--whitespace=nowarn", "-p1"])
        .arg(&patch)
        .output()
        .context(|| "cannot run git apply".into())?;
    if !out.status.success() {
        bail!(
            "patch {} does not apply to {}:\n{}",
            patch.display(),
            tree.display(),
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
    }
    Ok(())
}

/// Copies `src` (the repository path `rel`) to `dst`, but for module
/// index files, which [`module_index::render`] writes.
fn copy_tree(src: &Path, rel: &str, dst: &Path) -> Result<()> {
    if src.is_dir() {
        for e in std::fs::read_dir(src)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            copy_tree(&e.path(), &format!("{rel}/{name}"), &dst.join(&name))?;
        }
        return Ok(());
    }
    if module_index::is_index(rel) {
        return Ok(());
    }
    let data = std::fs::read(src).context(|| format!("cannot read {}", src.display()))?;
    crate::util::write_if_changed(dst, &data)?;
    Ok(())
}

/// A file's content hash and modification time.
type Stamp = (u64, SystemTime);

/// Resets a harness-owned working tree to the pristine baseline and applies
/// the series, keeping the modification time of every file whose content
/// ends up unchanged so that incremental kernel builds stay incremental.
pub fn reapply(tree: &Path, repo: &Path) -> Result<usize> {
    reapply_prefix(tree, repo, usize::MAX)
}

/// [`reapply`] for the first `count` patches of the series.
pub fn reapply_prefix(tree: &Path, repo: &Path, count: usize) -> Result<usize> {
    let before = dirty_files(tree)?;
    run(Command::new("git")
        .arg("-C")
        .arg(tree)
        .args(["checkout", "-q", "-f", "--detach", PRISTINE]))?;
    run(Command::new("git")
        .arg("-C")
        .arg(tree)
        .args(["clean", "-q", "-f", "-d", "-x"]))?;
    let n = apply_prefix(tree, repo, count)?;
    for (path, (hash, mtime)) in before {
        let full = tree.join(&path);
        if let Ok(data) = std::fs::read(&full) {
            if content_hash(&data) == hash {
                if let Ok(f) = std::fs::File::options().write(true).open(&full) {
                    let _ = f.set_modified(mtime);
                }
            }
        }
    }
    Ok(n)
}

fn content_hash(data: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    data.hash(&mut h);
    h.finish()
}

/// Files that differ from the baseline, untracked or ignored included.
fn dirty_files(tree: &Path) -> Result<HashMap<PathBuf, Stamp>> {
    let status = output(Command::new("git").arg("-C").arg(tree).args([
        "status",
        "--porcelain",
        "-z",
        "--ignored",
        "--untracked-files=all",
    ]))?;
    let mut out = HashMap::new();
    for rec in status.split('\0') {
        if rec.len() < 4 {
            continue;
        }
        let path = PathBuf::from(&rec[3..]);
        let full = tree.join(&path);
        let (Ok(data), Ok(meta)) = (std::fs::read(&full), std::fs::metadata(&full)) else {
            continue;
        };
        if let Ok(mtime) = meta.modified() {
            out.insert(path, (content_hash(&data), mtime));
        }
    }
    Ok(out)
}
