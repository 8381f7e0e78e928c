// SPDX-License-Identifier: GPL-2.0
//! Booting the kernel in QEMU (TCG) and splitting its console output into
//! the steps the initramfs ran.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::initramfs::MARK;
use crate::util::{Context, Result};

/// QEMU parameters, kept as data (as tools/testing/kunit/qemu_configs do).
pub struct QemuConfig {
    pub binary: &'static str,
    pub memory: &'static str,
    pub smp: u32,
    pub cmdline: &'static str,
}

/// x86_64 under TCG: nested KVM is not available where this runs.
pub const X86_64: QemuConfig = QemuConfig {
    binary: "qemu-system-x86_64",
    memory: "4G",
    smp: 2,
    // numa=fake=2 gives the test kernel (CONFIG_NUMA_EMU) two nodes; the
    // bench kernel has no NUMA and ignores it.
    cmdline: "console=ttyS0 panic=-1 oops=panic log_buf_len=8M numa=fake=2 rdinit=/init",
};

/// What one step printed and how it ended.
#[derive(Debug, Clone, Default)]
pub struct StepOutput {
    pub name: String,
    pub output: String,
    /// The exit status; None when the step never finished.
    pub status: Option<i32>,
    pub seconds: Option<f64>,
}

/// Everything the VM printed, split up.
#[derive(Debug, Default)]
pub struct Boot {
    /// Console lines before `/init` started (boot and KUnit).
    pub boot_lines: Vec<String>,
    pub steps: Vec<StepOutput>,
    /// The kernel log dumped at the end, if the guest got there.
    pub dmesg: Option<Vec<String>>,
    pub console: Vec<String>,
    pub finished: bool,
    pub timed_out: bool,
}

/// How the guest's clock runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    /// Real time: what the benchmarks' method times.
    Real,
    /// `-icount shift=0`: the virtual clock advances 1 ns per guest
    /// instruction, so a time the guest measures is the number of
    /// instructions it ran, free of the host's load and nearly the same
    /// from run to run (timers and two vCPUs still interleave as they
    /// may). Only for counting work: every instruction costs the same.
    Instructions,
}

/// Boots the VM and collects its console until it exits or `limit` passes.
pub fn boot(kernel: &Path, initrd: &Path, limit: Duration, echo: bool, log: &Path) -> Result<Boot> {
    boot_with_clock(kernel, initrd, limit, echo, log, Clock::Real)
}

/// [`boot`] with the guest clock `clock`.
pub fn boot_with_clock(
    kernel: &Path,
    initrd: &Path,
    limit: Duration,
    echo: bool,
    log: &Path,
    clock: Clock,
) -> Result<Boot> {
    boot_with_plugin(kernel, initrd, limit, echo, log, clock, None)
}

/// [`boot_with_clock`], with the TCG plugin `plugin` (QEMU's `-plugin`
/// argument) loaded.
pub fn boot_with_plugin(
    kernel: &Path,
    initrd: &Path,
    limit: Duration,
    echo: bool,
    log: &Path,
    clock: Clock,
    plugin: Option<&str>,
) -> Result<Boot> {
    let cfg = X86_64;
    let plugin: &[&str] = match plugin {
        Some(p) => &["-plugin", p],
        None => &[],
    };
    let icount: &[&str] = match clock {
        Clock::Real => &[],
        Clock::Instructions => &["-icount", "shift=0"],
    };
    let mut child = Command::new(cfg.binary)
        .args(["-m", cfg.memory, "-smp", &cfg.smp.to_string()])
        .args(icount)
        .args(plugin)
        .args([
            "-display",
            "none",
            "-monitor",
            "none",
            "-serial",
            "stdio",
            "-no-reboot",
        ])
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", cfg.cmdline])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context(|| format!("cannot start {}", cfg.binary))?;
    let (tx, rx) = mpsc::channel::<String>();
    let stdout = child.stdout.take();
    std::thread::spawn(move || {
        if let Some(out) = stdout {
            let mut r = BufReader::new(out);
            let mut buf = Vec::new();
            while r
                .read_until(b'\n', &mut buf)
                .map(|n| n > 0)
                .unwrap_or(false)
            {
                let line = String::from_utf8_lossy(&buf)
                    .trim_end_matches(['\n', '\r'])
                    .to_string();
                buf.clear();
                if tx.send(line).is_err() {
                    break;
                }
            }
        }
    });
    // The log is written as lines arrive, so a hung guest can be read.
    let mut live = std::fs::File::create(log).ok();
    let start = Instant::now();
    let mut lines = Vec::new();
    let mut timed_out = false;
    loop {
        let left = limit.saturating_sub(start.elapsed());
        if left.is_zero() {
            timed_out = true;
            let _ = child.kill();
            break;
        }
        match rx.recv_timeout(left.min(Duration::from_secs(1))) {
            Ok(line) => {
                if echo {
                    println!("{line}");
                } else if let Some(rest) = line.strip_prefix(MARK) {
                    eprintln!("    vm {:>5.0}s:{rest}", start.elapsed().as_secs_f64());
                }
                if let Some(f) = live.as_mut() {
                    let _ = writeln!(f, "{line}");
                }
                lines.push(line);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let _ = child.wait();
    drop(live);
    let _ = std::fs::write(log, lines.join("\n"));
    let mut b = split(lines);
    b.timed_out = timed_out;
    Ok(b)
}

/// Splits console lines at the init script's markers.
pub fn split(lines: Vec<String>) -> Boot {
    let mut b = Boot::default();
    let mut in_boot = true;
    let mut current: Option<StepOutput> = None;
    let mut dmesg: Option<Vec<String>> = None;
    let mut in_dmesg = false;
    for line in &lines {
        if let Some(rest) = line.strip_prefix(MARK).map(str::trim) {
            let mut w = rest.split_whitespace();
            match w.next() {
                Some("boot-done") => in_boot = false,
                Some("begin") => {
                    current = Some(StepOutput {
                        name: w.next().unwrap_or("").to_string(),
                        ..Default::default()
                    })
                }
                Some("end") => {
                    if let Some(mut s) = current.take() {
                        let _ = w.next();
                        s.status = w.next().and_then(|v| v.parse().ok());
                        s.seconds = w.next().and_then(|v| v.parse().ok());
                        b.steps.push(s);
                    }
                }
                Some("dmesg-begin") => {
                    in_dmesg = true;
                    dmesg = Some(Vec::new());
                }
                Some("dmesg-end") => in_dmesg = false,
                Some("done") => b.finished = true,
                _ => {}
            }
            continue;
        }
        if in_boot {
            b.boot_lines.push(line.clone());
        } else if in_dmesg {
            if let Some(d) = dmesg.as_mut() {
                d.push(line.clone());
            }
        } else if let Some(s) = current.as_mut() {
            s.output.push_str(line);
            s.output.push('\n');
        }
    }
    if let Some(s) = current.take() {
        b.steps.push(s);
    }
    b.dmesg = dmesg;
    b.console = lines;
    b
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn splits_steps_and_dmesg() {
        let text = "boot\n    # Subtest: x\n@@fm boot-done 3.0 1.0\n@@fm begin a\nhello\n@@fm end a 0 4.5 2\n\
                    @@fm begin b\npartial\n@@fm dmesg-begin\n[ 0.1] k\n@@fm dmesg-end\n@@fm done\n";
        let b = split(text.lines().map(String::from).collect());
        assert_eq!(b.boot_lines.len(), 2);
        assert_eq!(b.steps.len(), 2);
        assert_eq!(b.steps[0].status, Some(0));
        assert_eq!(b.steps[0].output, "hello\n");
        assert_eq!(b.steps[1].status, None, "b never ended");
        assert_eq!(b.dmesg.as_deref(), Some(&["[ 0.1] k".to_string()][..]));
        assert!(b.finished);
    }
}
