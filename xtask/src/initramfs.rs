// SPDX-License-Identifier: GPL-2.0
//! The VM's initramfs: static busybox, the test programs, and an `/init`
//! that runs a plan of suites between markers the harness parses.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::bail;
use crate::util::{output, run, Context, Result};

/// Marks the harness's own lines in the console output.
pub const MARK: &str = "@@fm";

/// One program run in the VM, with its own time limit.
#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    /// A shell command line run by the guest's busybox sh.
    pub command: String,
    pub timeout_secs: u64,
}

/// Files to put in the image: (host path, path in the guest).
pub type Payload = Vec<(PathBuf, String)>;

fn busybox() -> Result<PathBuf> {
    let files = output(Command::new("dpkg").args(["-L", "busybox-static"]))?;
    files
        .lines()
        .find(|l| l.ends_with("/bin/busybox"))
        .map(PathBuf::from)
        .ok_or_else(|| crate::util::Error("busybox-static installs no bin/busybox".into()))
}

/// The guest's `/init`: mount, run each step under `timeout`, dump the
/// kernel log, and reboot (QEMU runs with -no-reboot, so it exits).
pub fn init_script(steps: &[Step]) -> String {
    let mut s = String::from(
        "#!/bin/busybox sh\n\
         /bin/busybox --install -s /bin\n\
         export PATH=/bin:/opt/bin:/opt/tests\n\
         mount -t devtmpfs devtmpfs /dev\n\
         mount -t proc proc /proc\n\
         mount -t sysfs sys /sys\n\
         mount -t debugfs debugfs /sys/kernel/debug\n\
         mount -t tmpfs tmp /tmp\n\
         # Only errors on the console from here: the whole log is dumped at the end.\n\
         echo 3 > /proc/sys/kernel/printk\n\
         cd /tmp\n",
    );
    s.push_str(&format!("echo \"{MARK} boot-done $(cat /proc/uptime)\"\n"));
    for st in steps {
        let cmd = st.command.replace('\'', "'\\''");
        s.push_str(&format!(
            "echo \"{MARK} begin {name}\"\n\
             timeout -s KILL {t} sh -c '{cmd}' </dev/null 2>&1\n\
             echo \"{MARK} end {name} $? $(cat /proc/uptime)\"\n",
            name = st.name,
            t = st.timeout_secs,
        ));
    }
    s.push_str(&format!(
        "echo \"{MARK} dmesg-begin\"\ndmesg -s 8388608\necho \"{MARK} dmesg-end\"\n\
         echo \"{MARK} done\"\nsync\nreboot -f\n"
    ));
    s
}

/// Writes a gzip-compressed newc cpio of busybox, `/init` and the payload.
pub fn build(out_dir: &Path, steps: &[Step], payload: &Payload) -> Result<PathBuf> {
    let root = out_dir.join("initramfs");
    let _ = std::fs::remove_dir_all(&root);
    for d in ["bin", "dev", "proc", "sys", "tmp", "opt/bin", "opt/tests"] {
        std::fs::create_dir_all(root.join(d))?;
    }
    std::fs::copy(busybox()?, root.join("bin/busybox")).context(|| "cannot copy busybox".into())?;
    let init = root.join("init");
    std::fs::write(&init, init_script(steps))?;
    std::fs::set_permissions(&init, std::fs::Permissions::from_mode(0o755))?;
    for (host, guest) in payload {
        if !host.is_file() {
            bail!("{} is not a file to put in the VM", host.display());
        }
        let dst = root.join(guest.trim_start_matches('/'));
        if let Some(d) = dst.parent() {
            std::fs::create_dir_all(d)?;
        }
        std::fs::copy(host, &dst).context(|| format!("cannot copy {}", host.display()))?;
        std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o755))?;
    }
    let image = out_dir.join("initramfs.cpio.gz");
    run(Command::new("sh").current_dir(&root).arg("-c").arg(format!(
        "find . -print0 | cpio --null -o -H newc --quiet -R 0:0 | gzip -1 > '{}'",
        image.display()
    )))?;
    Ok(image)
}
