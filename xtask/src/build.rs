// SPDX-License-Identifier: GPL-2.0
//! Configuring and building the kernel and the upstream hmm-tests.
//!
//! Builds are out of tree (`O=`) in the cache, one folder per flavour, so
//! resetting the source tree never throws a build away.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::bail;
use crate::util::{cache_dir, jobs, run_logged, write_if_changed, Context, Result};

/// A kernel configuration: the fragments merged over `tinyconfig`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// DEBUG_VM and lockdep: what the tests run on.
    Test,
    /// No debug options: what benchmarks run on.
    Bench,
    /// The test options, built for each prefix of the series in turn.
    Series,
    /// The test options with generic KASAN.
    Kasan,
    /// The test options and the drivers of [`DRIVER_OBJECTS`], never
    /// booted: only those objects are compiled.
    Drivers,
}

/// Objects of existing drivers that the series converts, compiled alone in
/// the drivers flavour: a whole DRM build would cost more than the rest of
/// the test run.
pub const DRIVER_OBJECTS: &[&str] = &[
    "drivers/gpu/drm/drm_pagemap.o",
    "drivers/gpu/drm/nouveau/nouveau_dmem.o",
];

impl Flavour {
    pub fn name(self) -> &'static str {
        match self {
            Flavour::Test => "test",
            Flavour::Bench => "bench",
            Flavour::Series => "series",
            Flavour::Kasan => "kasan",
            Flavour::Drivers => "drivers",
        }
    }

    /// Fragment files, in merge order, relative to the repository.
    fn fragments(self) -> Vec<&'static str> {
        let mut f = vec![
            "xtask/config/base.config",
            match self {
                Flavour::Test | Flavour::Series | Flavour::Kasan | Flavour::Drivers => {
                    "xtask/config/test.config"
                }
                Flavour::Bench => "xtask/config/bench.config",
            },
        ];
        match self {
            Flavour::Kasan => f.push("xtask/config/kasan.config"),
            Flavour::Drivers => f.push("xtask/config/drivers.config"),
            _ => {}
        }
        f.push("kunit/.kunitconfig");
        f
    }
}

/// The build output folder of a flavour.
pub fn build_dir(flavour: Flavour) -> PathBuf {
    cache_dir().join("build").join(flavour.name())
}

/// Clang and rustc on the same LLVM major (22), so that
/// CONFIG_RUST_INLINE_HELPERS can inline the C helpers into Rust.
pub const LLVM_SUFFIX: &str = "-22";

fn make(tree: &Path, out: &Path) -> Command {
    let mut c = Command::new("make");
    c.current_dir(tree)
        .arg(format!("O={}", out.display()))
        .arg(format!("LLVM={LLVM_SUFFIX}"));
    // bindgen loads whichever libclang it finds first: make it the one of
    // the compiler, also on a machine with other LLVM versions installed.
    let libclang = format!("/usr/lib/llvm{LLVM_SUFFIX}/lib");
    if Path::new(&libclang).exists() {
        c.env("LIBCLANG_PATH", libclang);
    }
    if let Some(src) = crate::setup::rust_lib_src() {
        c.arg(format!("RUST_LIB_SRC={}", src.display()));
    }
    c
}

/// Writes `.config` for the flavour when the fragments changed, and checks
/// every option the fragments ask for is in the result.
pub fn configure(tree: &Path, repo: &Path, flavour: Flavour) -> Result<PathBuf> {
    let out = build_dir(flavour);
    std::fs::create_dir_all(&out)?;
    let mut merged = String::new();
    for f in flavour.fragments() {
        let path = repo.join(f);
        let text =
            std::fs::read_to_string(&path).context(|| format!("cannot read {}", path.display()))?;
        merged.push_str(&format!("# from {f}\n{text}\n"));
    }
    let frag = out.join("folio-migrate.config");
    let changed = write_if_changed(&frag, merged.as_bytes())?;
    let config = out.join(".config");
    // A prefix of the series may lack or add Kconfig symbols: resolve the
    // fragments against each prefix's Kconfig anew.
    let series = flavour == Flavour::Series;
    if changed || series || !config.exists() {
        let before = std::fs::read(&config)
            .ok()
            .zip(std::fs::metadata(&config).and_then(|m| m.modified()).ok());
        let log = out.join("config.log");
        run_logged(
            make(tree, &out).arg("tinyconfig"),
            &log,
            "tinyconfig",
            Duration::from_secs(30),
        )?;
        run_logged(
            Command::new(tree.join("scripts/kconfig/merge_config.sh"))
                .current_dir(tree)
                .args(["-m", "-O"])
                .arg(&out)
                .arg(&config)
                .arg(&frag),
            &log,
            "merge_config",
            Duration::from_secs(30),
        )?;
        run_logged(
            make(tree, &out).arg("olddefconfig"),
            &log,
            "olddefconfig",
            Duration::from_secs(30),
        )?;
        // The same configuration again: keep its time, so that make does
        // not regenerate the headers and rebuild from them.
        if let Some((text, mtime)) = before {
            if std::fs::read(&config).ok().as_deref() == Some(text.as_slice()) {
                if let Ok(f) = std::fs::File::options().write(true).open(&config) {
                    let _ = f.set_modified(mtime);
                }
            }
        }
    }
    let have = std::fs::read_to_string(&config)?;
    let missing = missing_options(&merged, &have);
    if !missing.is_empty() && !series {
        let _ = std::fs::remove_file(&config);
        bail!(
            "the {} config lacks options its fragments ask for (a dependency is missing?): {}",
            flavour.name(),
            missing.join(", ")
        );
    }
    Ok(out)
}

/// Options a fragment sets (`CONFIG_X=v` or `# CONFIG_X is not set`) that
/// the resolved `.config` does not have.
pub fn missing_options(fragment: &str, config: &str) -> Vec<String> {
    let has = |l: &str| config.lines().any(|c| c.trim() == l);
    let mut missing = Vec::new();
    for line in fragment.lines().map(str::trim) {
        if line.starts_with("CONFIG_") {
            if !has(line) {
                missing.push(line.to_string());
            }
        } else if let Some(opt) = line
            .strip_prefix("# ")
            .and_then(|l| l.strip_suffix(" is not set"))
        {
            if config.lines().any(|c| c.starts_with(&format!("{opt}="))) {
                missing.push(line.to_string());
            }
        }
    }
    missing
}

/// Builds the kernel image; returns the bzImage path.
pub fn build_kernel(tree: &Path, out: &Path) -> Result<PathBuf> {
    run_logged(
        make(tree, out).arg(format!("-j{}", jobs())).arg("bzImage"),
        &out.join("build.log"),
        "kernel build",
        Duration::from_secs(20),
    )?;
    Ok(out.join("arch/x86/boot/bzImage"))
}

/// Compiles each of [`DRIVER_OBJECTS`] in the drivers flavour's folder
/// `out`; returns, per object, `None` when it compiled without a warning,
/// else why not.
pub fn compile_drivers(tree: &Path, out: &Path) -> Result<Vec<(String, Option<String>)>> {
    let mut results = Vec::new();
    for obj in DRIVER_OBJECTS {
        let name = Path::new(obj)
            .file_stem()
            .map_or_else(|| obj.to_string(), |n| n.to_string_lossy().into_owned());
        let log = out.join(format!("{name}.log"));
        let built = run_logged(
            make(tree, out).arg(format!("-j{}", jobs())).arg(obj),
            &log,
            &name,
            Duration::from_secs(20),
        );
        let stderr = std::fs::read_to_string(log.with_extension("stderr")).unwrap_or_default();
        let warning = stderr.lines().find(|l| l.contains("warning:"));
        results.push((
            obj.to_string(),
            match (built, warning) {
                (Err(e), _) => Some(format!("does not compile: {e}")),
                (Ok(()), Some(w)) => Some(format!("warns: {}", w.trim())),
                (Ok(()), None) => None,
            },
        ));
    }
    Ok(results)
}

/// Builds the upstream hmm-tests selftest, unmodified, from the same tree
/// against its exported headers; static, for the busybox initramfs.
pub fn build_hmm_tests(tree: &Path, out: &Path) -> Result<PathBuf> {
    let hdr = out.join("usr");
    run_logged(
        make(tree, out)
            .arg(format!("INSTALL_HDR_PATH={}", hdr.display()))
            .arg("headers_install"),
        &out.join("headers.log"),
        "headers_install",
        Duration::from_secs(20),
    )?;
    let sel = tree.join("tools/testing/selftests");
    let mm = sel.join("mm");
    let bin = out.join("selftests/hmm-tests");
    std::fs::create_dir_all(out.join("selftests"))?;
    let mut cc = Command::new("gcc");
    cc.args([
        "-static",
        "-Wall",
        "-O2",
        "-Wunreachable-code",
        "-U_FORTIFY_SOURCE",
    ])
    .arg(format!("-I{}", tree.display()))
    .arg(format!("-I{}", sel.display()))
    .arg(format!("-I{}", mm.display()))
    .arg("-isystem")
    .arg(hdr.join("include"))
    .arg("-isystem")
    .arg(tree.join("tools/include/uapi"))
    .arg(mm.join("hmm-tests.c"))
    .arg(mm.join("vm_util.c"))
    .arg(mm.join("hugepage_settings.c"))
    .args(["-lrt", "-lpthread", "-lm", "-o"])
    .arg(&bin);
    run_logged(
        &mut cc,
        &out.join("selftests/hmm-tests.log"),
        "hmm-tests",
        Duration::from_secs(20),
    )?;
    Ok(bin)
}

/// What every guest carries: the upstream hmm-tests in `/opt/tests`, and
/// the programs of `benchmarks/` and `selftests/` in `/opt/bin`, built from
/// `tree` (shell scripts are copied as they are).
pub fn guest_programs(tree: &Path, out: &Path, repo: &Path) -> Result<crate::initramfs::Payload> {
    let hmm = crate::util::stage("build hmm-tests", || build_hmm_tests(tree, out))?;
    let mut payload = vec![(hmm, "/opt/tests/hmm-tests".to_string())];
    for dir in ["benchmarks", "selftests"] {
        payload.extend(crate::util::stage(&format!("build {dir}"), || {
            build_programs(tree, out, repo, dir)
        })?);
        for script in program_sources(repo, dir, "sh")? {
            if let Some(name) = script.file_stem() {
                let guest = format!("/opt/bin/{}", name.to_string_lossy());
                payload.push((script, guest));
            }
        }
    }
    Ok(payload)
}

/// The files of `repo/dir` that end in `.ext`, sorted.
pub fn program_sources(repo: &Path, dir: &str, ext: &str) -> Result<Vec<PathBuf>> {
    let Ok(entries) = std::fs::read_dir(repo.join(dir)) else {
        return Ok(Vec::new());
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    out.sort();
    Ok(out)
}

/// Builds each C program of `repo/dir` statically against the tree's
/// exported headers (installed by [`build_hmm_tests`]) for the guest's
/// `/opt/bin`.
pub fn build_programs(
    tree: &Path,
    out: &Path,
    repo: &Path,
    dir: &str,
) -> Result<crate::initramfs::Payload> {
    let src_dir = dir;
    let dir = out.join(dir);
    std::fs::create_dir_all(&dir)?;
    let mut payload = Vec::new();
    for src in program_sources(repo, src_dir, "c")? {
        let Some(name) = src.file_stem().map(|n| n.to_string_lossy().into_owned()) else {
            continue;
        };
        let bin = dir.join(&name);
        let mut cc = Command::new("gcc");
        cc.args(["-static", "-Wall", "-Wextra", "-Werror", "-O2"])
            .arg(format!("-I{}", tree.join("lib").display()))
            // kselftest.h, for the KTAP output of the selftests.
            .arg(format!(
                "-I{}",
                tree.join("tools/testing/selftests").display()
            ))
            .arg("-isystem")
            .arg(out.join("usr/include"))
            .arg(&src)
            .args(["-lpthread", "-lm", "-o"])
            .arg(&bin);
        run_logged(
            &mut cc,
            &dir.join(format!("{name}.log")),
            &name,
            Duration::from_secs(20),
        )?;
        payload.push((bin, format!("/opt/bin/{name}")));
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::{missing_options, program_sources};

    #[test]
    fn benchmark_sources_are_the_c_files() {
        let dir = std::env::temp_dir().join(format!("fm-bench-{}", std::process::id()));
        let b = dir.join("benchmarks");
        std::fs::create_dir_all(&b).unwrap();
        for f in ["b.c", "a.c", "notes.md", "helper.h"] {
            std::fs::write(b.join(f), "").unwrap();
        }
        let got = program_sources(&dir, "benchmarks", "c").unwrap();
        let names: Vec<_> = got
            .iter()
            .map(|p| p.file_name().unwrap().to_owned())
            .collect();
        assert_eq!(names, ["a.c", "b.c"]);
        assert!(program_sources(&dir.join("none"), "benchmarks", "c")
            .unwrap()
            .is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reports_options_kconfig_dropped() {
        let frag = "CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=8\n# comment\n";
        let cfg = "CONFIG_A=y\nCONFIG_C=8\n";
        assert!(missing_options(frag, cfg).is_empty());
        let cfg = "CONFIG_A=y\nCONFIG_B=y\n";
        assert_eq!(
            missing_options(frag, cfg),
            vec!["# CONFIG_B is not set", "CONFIG_C=8"]
        );
    }
}
