// SPDX-License-Identifier: GPL-2.0
//! Where a VM command's guest instructions go, per kernel function: a TCG
//! plugin (`xtask/profile/tb_profile.c`) counts the instructions of every
//! translated block while a window is open, from each entry into one
//! function until the next entry into another, and the blocks are then
//! summed per symbol of `vmlinux`. A block counts wholly for the function
//! it starts in; code inlined into a function counts for it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::bail;
use crate::util::{output, run, Context, Result};

/// The plugin's source, compiled on first use.
const PLUGIN_SOURCE: &str = include_str!("../profile/tb_profile.c");

/// Guest addresses below this are user space (x86_64).
const KERNEL_START: u64 = 0xffff_8000_0000_0000;

/// When to count: from each entry into `from` until the next entry into
/// one of `until`.
pub struct Window {
    pub from: String,
    pub until: Vec<String>,
}

/// Compiles the plugin into `dir` and returns the `-plugin` argument that
/// counts `window`'s functions of `vmlinux` into `dump`.
pub fn plugin_arg(dir: &Path, vmlinux: &Path, window: &Window, dump: &Path) -> Result<String> {
    let src = dir.join("tb_profile.c");
    let so = dir.join("tb_profile.so");
    std::fs::write(&src, PLUGIN_SOURCE).context(|| format!("cannot write {}", src.display()))?;
    run(Command::new("cc")
        .args(["-O2", "-shared", "-fPIC", "-fvisibility=hidden", "-o"])
        .arg(&so)
        .arg(&src))?;
    let symbols = symbols(vmlinux)?;
    let address = |name: &str| -> Result<u64> {
        match symbols.iter().find(|(_, n)| n == name) {
            Some((a, _)) => Ok(*a),
            None => bail!("no function `{name}` in {}", vmlinux.display()),
        }
    };
    let mut arg = format!("{},from={:x}", so.display(), address(&window.from)?);
    for name in &window.until {
        arg.push_str(&format!(",until={:x}", address(name)?));
    }
    arg.push_str(&format!(",out={}", dump.display()));
    Ok(arg)
}

/// The text symbols of `vmlinux`, by address.
fn symbols(vmlinux: &Path) -> Result<Vec<(u64, String)>> {
    let text = output(Command::new("nm").arg("-n").arg(vmlinux))?;
    Ok(parse_symbols(&text))
}

/// The text symbols of `nm -n` output, by address.
fn parse_symbols(nm: &str) -> Vec<(u64, String)> {
    let mut symbols: Vec<(u64, String)> = nm
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (addr, kind, name) = (f.next()?, f.next()?, f.next()?);
            if !matches!(kind, "t" | "T" | "w" | "W") {
                return None;
            }
            Some((u64::from_str_radix(addr, 16).ok()?, name.to_string()))
        })
        .collect();
    symbols.sort();
    symbols
}

/// Sums the blocks of the plugin's dump (`address instructions runs`) per
/// function, most instructions first; user-space blocks count as
/// `[user]`, kernel blocks below the first symbol as `[unknown]`.
fn attribute(symbols: &[(u64, String)], dump: &str) -> Vec<(String, u64)> {
    let mut total: HashMap<&str, u64> = HashMap::new();
    for line in dump.lines() {
        let f: Vec<u64> = line
            .split_whitespace()
            .enumerate()
            .filter_map(|(i, v)| {
                if i == 0 {
                    u64::from_str_radix(v, 16).ok()
                } else {
                    v.parse().ok()
                }
            })
            .collect();
        let [addr, insns, runs] = f[..] else {
            continue;
        };
        let name = if addr < KERNEL_START {
            "[user]"
        } else {
            match symbols.partition_point(|(a, _)| *a <= addr) {
                0 => "[unknown]",
                i => symbols[i - 1].1.as_str(),
            }
        };
        *total.entry(name).or_default() += insns * runs;
    }
    let mut rows: Vec<(String, u64)> = total.into_iter().map(|(n, v)| (n.to_string(), v)).collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    rows
}

/// Writes the profile in `dump` per function of `vmlinux` to `table`,
/// with instructions per `per` units of work (pages, calls) beside the
/// totals, and prints its first `top` lines.
pub fn report(vmlinux: &Path, dump: &Path, per: u64, top: usize, table: &Path) -> Result<()> {
    let text =
        std::fs::read_to_string(dump).context(|| format!("no profile in {}", dump.display()))?;
    let rows = attribute(&symbols(vmlinux)?, &text);
    let all: u64 = rows.iter().map(|(_, v)| v).sum();
    let per = per.max(1) as f64;
    let mut out = format!(
        "{all} instructions counted, {:.1} per unit of {per}\n{:>14} {:>10} {:>6}  function\n",
        all as f64 / per,
        "instructions",
        "per unit",
        "share"
    );
    for (name, v) in &rows {
        out.push_str(&format!(
            "{v:>14} {:>10.1} {:>5.1}%  {name}\n",
            *v as f64 / per,
            100.0 * *v as f64 / all.max(1) as f64
        ));
    }
    std::fs::write(table, &out).context(|| format!("cannot write {}", table.display()))?;
    for line in out.lines().take(top + 2) {
        println!("{line}");
    }
    println!("whole table: {}", table.display());
    Ok(())
}

/// Where a profile of `dir`'s run is kept: the dump and the table.
pub fn files(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("tb_profile.txt"), dir.join("profile.txt"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_count_for_the_function_they_start_in() {
        let symbols = parse_symbols(
            "ffffffff81000000 T first\n\
             ffffffff81000100 t second\n\
             ffffffff81000200 D data\n\
             ffffffff81000300 W third\n",
        );
        assert_eq!(symbols.len(), 3);
        let dump = "ffffffff81000010 4 10\n\
                    ffffffff810000f0 2 5\n\
                    ffffffff81000100 3 1\n\
                    ffffffff81000250 7 2\n\
                    ffffffff80000000 9 1\n\
                    401000 5 3\n\
                    garbage\n";
        assert_eq!(
            attribute(&symbols, dump),
            vec![
                ("first".to_string(), 50),
                ("second".to_string(), 17),
                ("[user]".to_string(), 15),
                ("[unknown]".to_string(), 9),
            ]
        );
    }
}
