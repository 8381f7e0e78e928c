// SPDX-License-Identifier: GPL-2.0
//! The kernel tree: Debian's linux-source-7.3, unpacked once into the cache
//! with a pristine git baseline, and working trees made from it.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::bail;
use crate::setup::KERNEL_SUITE;
use crate::util::{cache_dir, output, run, Context, Result};

const PACKAGE: &str = "linux-source-7.3";
const PINNED_VERSION: &str = "7.3.4-1~bpo13+1";
/// The tag of the unmodified source in the baseline repository.
pub const PRISTINE: &str = "pristine";

/// The baseline repository: the unpacked source, committed once.
pub fn baseline_dir() -> PathBuf {
    cache_dir().join(PACKAGE)
}

/// Fetches and unpacks the kernel source once; returns the baseline.
pub fn ensure_baseline() -> Result<PathBuf> {
    let base = baseline_dir();
    if crate::util::succeeds(Command::new("git").arg("-C").arg(&base).args([
        "rev-parse",
        "-q",
        "--verify",
        PRISTINE,
    ])) {
        return Ok(base);
    }
    let cache = cache_dir();
    std::fs::create_dir_all(&cache)?;
    let deb = fetch_deb(&cache)?;
    let unpack = cache.join("unpack.tmp");
    let _ = std::fs::remove_dir_all(&unpack);
    std::fs::create_dir_all(&unpack)?;
    eprintln!("    unpacking {}", deb.display());
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpack))?;
    let tarball = std::fs::read_dir(unpack.join("usr/src"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.to_string_lossy().ends_with(".tar.xz"))
        .ok_or_else(|| crate::util::Error(format!("{} holds no source tarball", deb.display())))?;
    run(Command::new("tar")
        .arg("-C")
        .arg(&unpack)
        .arg("-xJf")
        .arg(&tarball))?;
    let top = unpack.join(PACKAGE);
    if !top.join("Makefile").exists() {
        bail!("{} did not unpack to {PACKAGE}/", tarball.display());
    }
    let _ = std::fs::remove_dir_all(&base);
    std::fs::rename(&top, &base)?;
    let _ = std::fs::remove_dir_all(&unpack);
    eprintln!("    committing the pristine baseline");
    let git =
        |args: &[&str]| -> Result<()> { run(Command::new("git").arg("-C").arg(&base).args(args)) };
    git(&["init", "-q", "-b", "main"])?;
    // Debian's .gitignore ignores the whole top level: force-add.
    git(&["add", "-f", "-A"])?;
    git(&ident(&[
        "commit",
        "-q",
        "-m",
        "Linux 7.3 (Debian linux-source-7.3)",
    ]))?;
    git(&["tag", PRISTINE])?;
    Ok(base)
}

/// A fixed identity for commits the harness makes.
pub fn ident<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "-c",
        "user.name=folio-migrate",
        "-c",
        "user.email=folio-migrate@localhost",
    ];
    v.extend_from_slice(args);
    v
}

/// Downloads the pinned linux-source-7.3, or the newest 7.3.y if the
/// archive no longer has the pin (and says so).
fn fetch_deb(cache: &Path) -> Result<PathBuf> {
    let dir = cache.join("deb");
    std::fs::create_dir_all(&dir)?;
    if let Some(found) = find_deb(&dir)? {
        return Ok(found);
    }
    let madison = output(Command::new("apt-cache").args(["madison", PACKAGE]))?;
    let versions: Vec<&str> = madison
        .lines()
        .filter_map(|l| l.split('|').nth(1).map(str::trim))
        .collect();
    let version = if versions.contains(&PINNED_VERSION) {
        PINNED_VERSION.to_string()
    } else if let Some(newest) = versions.first() {
        eprintln!(
            "    NOTE: {PACKAGE} {PINNED_VERSION} is no longer in the archive; using {newest}"
        );
        newest.to_string()
    } else {
        bail!("apt knows no {PACKAGE}: is {KERNEL_SUITE} in the apt sources (cargo xtask setup)?");
    };
    eprintln!("    downloading {PACKAGE} {version}");
    run(Command::new("apt-get")
        .current_dir(&dir)
        .arg("download")
        .arg(format!("{PACKAGE}={version}")))?;
    find_deb(&dir)?.ok_or_else(|| {
        crate::util::Error(format!(
            "apt-get download left no .deb in {}",
            dir.display()
        ))
    })
}

fn find_deb(dir: &Path) -> Result<Option<PathBuf>> {
    Ok(std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name().is_some_and(|n| {
                n.to_string_lossy().starts_with(PACKAGE) && n.to_string_lossy().ends_with(".deb")
            })
        }))
}

/// A working tree of the baseline under the cache, created on first use.
pub fn worktree(name: &str) -> Result<PathBuf> {
    let base = ensure_baseline()?;
    let dir = cache_dir().join("trees").join(name);
    if dir.join("Makefile").exists() {
        return Ok(dir);
    }
    let _ = std::fs::remove_dir_all(&dir);
    let _ = run(Command::new("git")
        .arg("-C")
        .arg(&base)
        .args(["worktree", "prune"]));
    run(Command::new("git")
        .arg("-C")
        .arg(&base)
        .args(["worktree", "add", "-q", "--detach"])
        .arg(&dir)
        .arg(PRISTINE))
    .context(|| format!("cannot make a working tree at {}", dir.display()))?;
    Ok(dir)
}

/// The `VERSION.PATCHLEVEL.SUBLEVEL` of a kernel tree.
pub fn kernel_version(tree: &Path) -> Result<String> {
    let mk = std::fs::read_to_string(tree.join("Makefile"))
        .context(|| format!("{} is not a kernel tree", tree.display()))?;
    let get = |k: &str| {
        mk.lines()
            .find_map(|l| {
                l.strip_prefix(k)
                    .map(|v| v.trim_start_matches([' ', '=']).trim().to_string())
            })
            .unwrap_or_default()
    };
    Ok(format!(
        "{}.{}.{}",
        get("VERSION"),
        get("PATCHLEVEL"),
        get("SUBLEVEL")
    ))
}
