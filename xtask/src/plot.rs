// SPDX-License-Identifier: GPL-2.0
//! The bench plot: migration throughput against buffer size, per engine,
//! page size and direction, drawn with gnuplot from the JSON lines of
//! `migrate_throughput`, beside the memcpy bandwidth of the same buffers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::bail;
use crate::util::{Context, Result};

/// The number after `"key":` in a flat JSON object line, if any.
pub fn json_number(line: &str, key: &str) -> Option<f64> {
    let pat = format!("\"{key}\":");
    let rest = &line[line.find(&pat)? + pat.len()..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | 'e' | 'E' | '+')))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// The string after `"key":` in a flat JSON object line, if any.
pub fn json_string<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("\"{key}\":\"");
    let rest = &line[line.find(&pat)? + pat.len()..];
    Some(&rest[..rest.find('"')?])
}

/// One curve: (bytes, GB/s) points, sorted by size.
type Curve = Vec<(f64, f64)>;

/// Groups the JSON lines into curves named `direction engine page`, plus
/// one `memcpy` curve (the median memcpy of each size, from any engine).
pub fn curves(jsonl: &str) -> BTreeMap<String, Curve> {
    let mut out: BTreeMap<String, Curve> = BTreeMap::new();
    for line in jsonl.lines() {
        let (Some(bytes), Some(page)) = (json_number(line, "bytes"), json_string(line, "page"))
        else {
            continue;
        };
        let engine = json_string(line, "engine").unwrap_or("c");
        for (dir, key) in [("s2d", "s2d_ms_median"), ("d2s", "d2s_ms_median")] {
            if let Some(ms) = json_number(line, key).filter(|&m| m > 0.0) {
                out.entry(format!("{dir} {engine} {page}"))
                    .or_default()
                    .push((bytes, bytes / (ms * 1e6)));
            }
        }
        if let Some(ms) = json_number(line, "memcpy_ms_median").filter(|&m| m > 0.0) {
            let c = out.entry("memcpy".into()).or_default();
            if !c.iter().any(|&(b, _)| b == bytes) {
                c.push((bytes, bytes / (ms * 1e6)));
            }
        }
    }
    for c in out.values_mut() {
        c.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    out
}

/// Draws `dir/migrate_throughput.png` from `dir/migrate_throughput.jsonl`;
/// returns its path.
pub fn throughput_png(dir: &Path) -> Result<PathBuf> {
    let jsonl = dir.join("migrate_throughput.jsonl");
    let text =
        std::fs::read_to_string(&jsonl).context(|| format!("cannot read {}", jsonl.display()))?;
    let curves = curves(&text);
    if curves.is_empty() {
        bail!("{} has no throughput figures to plot", jsonl.display());
    }
    let data = dir.join("migrate_throughput.dat");
    let mut dat = String::new();
    let mut plots: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (i, (name, points)) in curves.iter().enumerate() {
        dat.push_str(&format!("# {name}\n"));
        for (b, g) in points {
            dat.push_str(&format!("{} {g:.4}\n", b / 1048576.0));
        }
        dat.push_str("\n\n");
        let dash = if name.contains("rust") { 1 } else { 2 };
        let entry = format!(
            "'{}' index {i} using 1:2 with linespoints dt {dash} lc {} lw 2 title '{name}'",
            data.display(),
            i + 1
        );
        if name == "memcpy" {
            for d in ["s2d", "d2s"] {
                plots.entry(d).or_default().push(entry.clone());
            }
        } else if let Some(d) = name.split(' ').next() {
            plots
                .entry(if d == "s2d" { "s2d" } else { "d2s" })
                .or_default()
                .push(entry);
        }
    }
    std::fs::write(&data, dat)?;
    let png = dir.join("migrate_throughput.png");
    let mut gp = format!(
        "set terminal png size 1200,500\nset output '{}'\nset multiplot layout 1,2\n\
         set logscale x 2\nset xlabel 'buffer (MiB)'\nset ylabel 'GB/s (median)'\n\
         set key top left\nset grid\n",
        png.display()
    );
    for (d, title) in [("s2d", "system -> device"), ("d2s", "device -> system")] {
        gp.push_str(&format!(
            "set title '{title} (QEMU TCG)'\nplot {}\n",
            plots.get(d).map(|v| v.join(", ")).unwrap_or_default()
        ));
    }
    gp.push_str("unset multiplot\n");
    let script = dir.join("migrate_throughput.gp");
    std::fs::write(&script, gp)?;
    let status = Command::new("gnuplot")
        .arg(&script)
        .status()
        .context(|| "cannot run gnuplot (cargo xtask setup installs gnuplot-nox)".into())?;
    if !status.success() {
        bail!("gnuplot failed on {}", script.display());
    }
    Ok(png)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_numbers_and_strings() {
        let l = r#"{"engine":"rust","page":"thp","bytes":2097152,"s2d_ms_median":2.5}"#;
        assert_eq!(json_number(l, "bytes"), Some(2097152.0));
        assert_eq!(json_number(l, "s2d_ms_median"), Some(2.5));
        assert_eq!(json_string(l, "engine"), Some("rust"));
        assert_eq!(json_number(l, "missing"), None);
    }

    #[test]
    fn groups_curves_by_direction_engine_and_page() {
        let text = "\
{\"engine\":\"c\",\"page\":\"4k\",\"bytes\":2097152,\"s2d_ms_median\":2.0,\"d2s_ms_median\":1.0,\"memcpy_ms_median\":1.0}
{\"engine\":\"rust\",\"page\":\"4k\",\"bytes\":2097152,\"s2d_ms_median\":1.0,\"d2s_ms_median\":1.0,\"memcpy_ms_median\":1.0}
{\"engine\":\"c\",\"page\":\"4k\",\"bytes\":1048576,\"s2d_ms_median\":1.0,\"d2s_ms_median\":0.5,\"memcpy_ms_median\":0.5}
";
        let c = curves(text);
        assert_eq!(
            c["s2d c 4k"],
            vec![(1048576.0, 1.048576), (2097152.0, 1.048576)]
        );
        assert_eq!(c["s2d rust 4k"], vec![(2097152.0, 2.097152)]);
        assert_eq!(c["memcpy"].len(), 2);
    }
}
