// SPDX-License-Identifier: GPL-2.0
//! The series: `patches/series` names, in order, the patches of the
//! patchset and which Rust sources each one introduces.
//!
//! ```text
//! # comment
//! 0001-mm-migrate_device-add-core.patch  +mm/core/src  +kunit/migrate_core_kunit.rs
//! ```
//!
//! A patch is a mail as `git format-patch` writes it: its Subject and body
//! become the commit message on export, its diff (possibly empty, for a
//! patch that only adds Rust) is applied to the tree.

use std::path::{Path, PathBuf};

use crate::bail;
use crate::util::{Context, Result};

/// Where each Rust folder of the repository lives in the kernel tree.
pub const RUST_MAP: &[(&str, &str)] = &[
    ("mm/core/src", "mm/folio_migrate/core"),
    // The VRAM driver is built into the folio_migrate object, whose Rust
    // API it uses: a kernel object cannot use another one's Rust items.
    ("drivers-glue/vram/core/src", "mm/folio_migrate/vram_core"),
    ("drivers-glue/vram", "mm/folio_migrate/vram"),
    ("mm/kernel", "mm/folio_migrate"),
    ("kunit", "mm/folio_migrate/kunit"),
];

/// One line of the series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The patch file, relative to `patches/`.
    pub patch: String,
    /// Repository paths (files or folders) this patch introduces.
    pub adds: Vec<String>,
}

/// Parses the text of a series file.
pub fn parse(text: &str) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut words = line.split_whitespace();
        let patch = words.next().unwrap_or_default().to_string();
        if patch.starts_with('+') {
            bail!(
                "patches/series:{}: a line starts with the patch name, not `{patch}`",
                n + 1
            );
        }
        let mut adds = Vec::new();
        for w in words {
            match w.strip_prefix('+') {
                Some(p) if !p.is_empty() => adds.push(p.trim_end_matches('/').to_string()),
                _ => bail!("patches/series:{}: `{w}` is not `+PATH`", n + 1),
            }
        }
        out.push(Entry { patch, adds });
    }
    Ok(out)
}

/// Reads `patches/series` of the repository.
pub fn load(repo: &Path) -> Result<Vec<Entry>> {
    let path = repo.join("patches/series");
    let text =
        std::fs::read_to_string(&path).context(|| format!("cannot read {}", path.display()))?;
    parse(&text)
}

/// Maps a repository path to its place in the kernel tree.
pub fn tree_path(repo_path: &str) -> Result<PathBuf> {
    for (from, to) in RUST_MAP {
        if repo_path == *from {
            return Ok(PathBuf::from(to));
        }
        if let Some(rest) = repo_path
            .strip_prefix(from)
            .and_then(|r| r.strip_prefix('/'))
        {
            return Ok(Path::new(to).join(rest));
        }
    }
    bail!(
        "`{repo_path}` is not under a Rust folder the series can add ({})",
        folders()
    )
}

fn folders() -> String {
    RUST_MAP
        .iter()
        .map(|(f, _)| *f)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The Rust sources under `RUST_MAP` folders that no entry introduces.
pub fn unlisted_sources(repo: &Path, entries: &[Entry]) -> Vec<String> {
    let mut all = Vec::new();
    for (from, _) in RUST_MAP {
        collect_rs(&repo.join(from), from, &mut all);
    }
    all.retain(|f| {
        !entries
            .iter()
            .flat_map(|e| &e.adds)
            .any(|a| f == a || f.starts_with(&format!("{a}/")))
    });
    all
}

fn collect_rs(dir: &Path, rel: &str, out: &mut Vec<String>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let rel = format!("{rel}/{name}");
        if e.path().is_dir() {
            collect_rs(&e.path(), &rel, out);
        } else if name.ends_with(".rs") || name == "Makefile" || name == "Kconfig" {
            out.push(rel);
        }
    }
}

/// The commit message of a patch mail: Subject (without `[PATCH ...]`)
/// and the body up to the `---` line.
pub fn commit_message(mail: &str) -> Result<String> {
    let mut lines = mail.lines();
    let mut subject = String::new();
    let mut in_subject = false;
    for line in lines.by_ref() {
        if line.is_empty() {
            break;
        }
        if let Some(s) = line.strip_prefix("Subject:") {
            subject = s.trim().to_string();
            in_subject = true;
        } else if in_subject && line.starts_with([' ', '\t']) {
            subject.push(' ');
            subject.push_str(line.trim());
        } else {
            in_subject = false;
        }
    }
    if subject.is_empty() {
        bail!("the patch has no Subject: header");
    }
    if subject.starts_with('[') {
        if let Some(end) = subject.find(']') {
            subject = subject[end + 1..].trim().to_string();
        }
    }
    let body: Vec<&str> = lines.take_while(|l| *l != "---").collect();
    Ok(format!("{subject}\n\n{}\n", body.join("\n").trim()))
}

/// Whether a patch mail carries a diff at all.
pub fn has_diff(mail: &str) -> bool {
    mail.lines().any(|l| l.starts_with("diff --git "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_entries_and_comments() {
        let s =
            parse("# head\n\n0001-a.patch +mm/core/src +kunit/x.rs # why\n0002-b.patch\n").unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].adds, vec!["mm/core/src", "kunit/x.rs"]);
        assert!(s[1].adds.is_empty());
        assert!(parse("+mm/core\n").is_err());
        assert!(parse("a.patch mm/core\n").is_err());
    }

    #[test]
    fn maps_rust_folders_into_the_tree() {
        assert_eq!(
            tree_path("mm/core/src/pfn.rs").unwrap(),
            Path::new("mm/folio_migrate/core/pfn.rs")
        );
        assert_eq!(
            tree_path("mm/kernel").unwrap(),
            Path::new("mm/folio_migrate")
        );
        assert_eq!(
            tree_path("kunit/a.rs").unwrap(),
            Path::new("mm/folio_migrate/kunit/a.rs")
        );
        assert!(tree_path("xtask/src/main.rs").is_err());
        assert!(tree_path("mm/core/srcx").is_err());
    }

    #[test]
    fn message_from_mail() {
        let mail = "From 1 Mon Sep 17 00:00:00 2001\nFrom: A <a@b>\nSubject: [PATCH 1/2] mm/migrate_device:\n add x\n\n\
                    Why it is needed.\n\nSigned-off-by: A <a@b>\n---\n mm/x.c | 1 +\ndiff --git a/mm/x.c b/mm/x.c\n";
        let m = commit_message(mail).unwrap();
        assert_eq!(
            m,
            "mm/migrate_device: add x\n\nWhy it is needed.\n\nSigned-off-by: A <a@b>\n"
        );
        assert!(has_diff(mail));
        assert!(commit_message("no headers\n").is_err());
    }
}
