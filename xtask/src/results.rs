// SPDX-License-Identifier: GPL-2.0
//! Turning VM output into results: KTAP from KUnit, TAP from kselftest,
//! and the kernel log checked for reports that fail a run on their own.

/// The outcome of one test case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail,
    Skip,
}

/// One test case and its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    pub name: String,
    pub outcome: Outcome,
}

/// A suite: its cases, the count it announced and whether it closed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Suite {
    pub name: String,
    pub cases: Vec<Case>,
    /// The `1..N` plan, if one was seen.
    pub plan: Option<usize>,
    /// The reason of a `1..0 # SKIP reason` plan, which skips the whole suite.
    pub skipped: Option<String>,
    /// The suite's own result line (KUnit), if seen.
    pub closed: Option<Outcome>,
    /// Why the suite failed beyond its cases (missing results, exit code, ...).
    pub problems: Vec<String>,
}

impl Suite {
    pub fn count(&self, o: Outcome) -> usize {
        self.cases.iter().filter(|c| c.outcome == o).count()
    }

    /// Adds the problems a parse cannot see in the cases themselves.
    pub fn check_complete(&mut self) {
        if let Some(plan) = self.plan {
            if self.cases.len() < plan {
                self.problems.push(format!(
                    "{} of {plan} results missing",
                    plan - self.cases.len()
                ));
            }
        } else {
            self.problems.push("no test plan (1..N) seen".into());
        }
        if self.closed == Some(Outcome::Fail) && self.count(Outcome::Fail) == 0 {
            self.problems.push("suite reported failure".into());
        }
    }

    pub fn passed(&self) -> bool {
        self.problems.is_empty() && self.count(Outcome::Fail) == 0
    }
}

/// Removes the `[    1.234567] ` printk time stamp, if any.
pub fn strip_timestamp(line: &str) -> &str {
    let l = line.trim_end_matches('\r');
    if let Some(rest) = l.strip_prefix('[') {
        if let Some(end) = rest.find("] ") {
            let stamp = &rest[..end];
            if stamp.trim().chars().all(|c| c.is_ascii_digit() || c == '.')
                && !stamp.trim().is_empty()
            {
                return &rest[end + 2..];
            }
        }
    }
    l
}

/// A TAP result line: `ok 3 name # SKIP why` -> (outcome, name). A line
/// without a name, `ok 3 # SKIP why` as kselftest's
/// `ksft_test_result_skip()` prints it, is named by its directive's text:
/// `why`.
fn result_line(s: &str) -> Option<(Outcome, String)> {
    let (ok, rest) = if let Some(r) = s.strip_prefix("not ok ") {
        (false, r)
    } else if let Some(r) = s.strip_prefix("ok ") {
        (true, r)
    } else {
        return None;
    };
    let (num, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    num.parse::<usize>().ok()?;
    let (name, directive) = if let Some(d) = rest.strip_prefix('#') {
        ("", d)
    } else if let Some((n, d)) = rest.split_once(" # ") {
        (n, d)
    } else {
        (rest.strip_suffix(" #").unwrap_or(rest), "")
    };
    let directive = directive.trim();
    let mut name = name.trim_start_matches("- ").trim().to_string();
    if name.is_empty() {
        // The text after the directive's keyword (SKIP, XFAIL, ...).
        name = directive
            .split_once(char::is_whitespace)
            .map_or("", |(_, why)| why.trim())
            .to_string();
    }
    let skip = directive.to_ascii_uppercase().starts_with("SKIP");
    let outcome = match (ok, skip) {
        (_, true) => Outcome::Skip,
        (true, false) => Outcome::Pass,
        (false, false) => Outcome::Fail,
    };
    Some((outcome, name))
}

/// The count of a `1..N` plan line (after `1..`), and the reason of a
/// `1..0 # SKIP reason` plan, which skips the whole suite.
fn plan(rest: &str) -> Option<(usize, Option<String>)> {
    let (count, directive) = match rest.split_once('#') {
        Some((c, d)) => (c, Some(d.trim())),
        None => (rest, None),
    };
    let count: usize = count.trim().parse().ok()?;
    let skip = directive
        .filter(|d| count == 0 && d.get(..4).is_some_and(|w| w.eq_ignore_ascii_case("skip")))
        .map(|d| d[4..].trim().to_string());
    Some((count, skip))
}

/// Records a plan line in `suite`: the first plan counts; a skipped suite
/// gets one skipped case naming the reason, so that it shows as skipped
/// rather than as a suite without a plan.
fn record_plan(suite: &mut Suite, rest: &str) {
    if suite.plan.is_some() {
        return;
    }
    if let Some((count, skip)) = plan(rest) {
        suite.plan = Some(count);
        if let Some(reason) = skip {
            suite.cases.push(Case {
                name: format!("whole suite skipped: {reason}"),
                outcome: Outcome::Skip,
            });
            suite.skipped = Some(reason);
        }
    }
}

fn indent(s: &str) -> usize {
    s.len() - s.trim_start_matches(' ').len()
}

/// Parses KUnit's KTAP from console lines (time stamps allowed).
///
/// A suite is a `# Subtest:` block directly under the top level; its cases
/// are the result lines at the suite's indentation. Deeper levels
/// (parameters) are summarised by their case's own line.
pub fn parse_ktap<'a>(lines: impl IntoIterator<Item = &'a str>) -> Vec<Suite> {
    let mut suites: Vec<Suite> = Vec::new();
    let mut current: Option<(usize, Suite)> = None;
    for raw in lines {
        let l = strip_timestamp(raw);
        let ind = indent(l);
        let s = l.trim();
        if let Some(name) = s.strip_prefix("# Subtest: ") {
            if current.is_none() && ind > 0 {
                current = Some((
                    ind,
                    Suite {
                        name: name.trim().to_string(),
                        ..Default::default()
                    },
                ));
            }
            continue;
        }
        let Some((sind, suite)) = current.as_mut() else {
            continue;
        };
        if ind == *sind {
            if let Some(n) = s.strip_prefix("1..") {
                record_plan(suite, n);
            } else if let Some((outcome, name)) = result_line(s) {
                suite.cases.push(Case { name, outcome });
            }
        } else if ind < *sind {
            if let Some((outcome, name)) = result_line(s) {
                if name == suite.name {
                    let (_, mut done) = current.take().unwrap_or_default();
                    done.closed = Some(outcome);
                    done.check_complete();
                    suites.push(done);
                }
            }
        }
    }
    if let Some((_, mut open)) = current {
        open.problems
            .push("suite never finished (crash or timeout?)".into());
        open.check_complete();
        suites.push(open);
    }
    suites
}

/// Parses a kselftest program's TAP output (top-level result lines).
pub fn parse_kselftest(name: &str, text: &str) -> Suite {
    let mut suite = Suite {
        name: name.to_string(),
        ..Default::default()
    };
    for raw in text.lines() {
        let l = raw.trim_end_matches('\r');
        if indent(l) != 0 {
            continue;
        }
        if let Some(n) = l.strip_prefix("1..") {
            record_plan(&mut suite, n);
        } else if let Some((outcome, name)) = result_line(l) {
            suite.cases.push(Case { name, outcome });
        }
    }
    suite.check_complete();
    suite
}

/// Kernel log lines that fail a run whatever the tests said.
const REPORTS: &[&str] = &[
    "WARNING:",
    "BUG:",
    "kernel BUG at",
    "Oops:",
    "Oops ",
    "Kernel panic",
    "general protection fault",
    "Unable to handle kernel",
    "Call Trace:",
    "KASAN:",
    "UBSAN:",
    "possible circular locking dependency",
    "possible recursive locking",
    "inconsistent lock state",
    "DEBUG_LOCKS_WARN_ON",
    "suspicious RCU usage",
    "BUG: lock held",
    "bad unlock balance",
    "lock held when returning to user space",
    "INFO: task",
    "rcu_sched self-detected stall",
    "rcu: INFO:",
    "page dumped because",
    "VM_BUG_ON",
    "list_add corruption",
    "list_del corruption",
    "watchdog: BUG: soft lockup",
];

/// The lines of a kernel log that report a warning, bug or lock problem.
pub fn kernel_reports<'a>(lines: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    lines
        .into_iter()
        .map(strip_timestamp)
        .filter(|l| REPORTS.iter().any(|r| l.contains(r)))
        .filter(|l| !benign(l))
        .map(str::to_string)
        .collect()
}

/// Lines that contain a report keyword but report nothing wrong.
fn benign(l: &str) -> bool {
    // Boot banners of the debug options themselves.
    l.contains("Lock dependency validator")
        || l.contains("lockdep: fixed")
        || l.starts_with("... ")
        || l.contains("lockdep self-tests")
}

#[cfg(test)]
mod tests {
    use super::*;

    const KTAP: &str = "\
[    1.000000] KTAP version 1
[    1.000001] 1..2
[    1.000002]     KTAP version 1
[    1.000003]     # Subtest: rust_kernel_str
[    1.000004]     # speed: normal
[    1.000005]     1..3
[    1.000006]     ok 1 test_a
[    1.000007]     ok 2 test_b # SKIP not here
[    1.000008]         KTAP version 1
[    1.000009]         # Subtest: test_param
[    1.000010]         ok 1 p1
[    1.000011]         not ok 2 p2
[    1.000012]     not ok 3 test_param
[    1.000013] # rust_kernel_str: pass:1 fail:1 skip:1 total:3
[    1.000014] not ok 1 rust_kernel_str
[    1.000015]     KTAP version 1
[    1.000016]     # Subtest: half
[    1.000017]     1..2
[    1.000018]     ok 1 only_one
";

    #[test]
    fn ktap_suites_cases_and_params() {
        let s = parse_ktap(KTAP.lines());
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].name, "rust_kernel_str");
        assert_eq!(s[0].plan, Some(3));
        assert_eq!(s[0].cases.len(), 3, "parameters are not cases");
        assert_eq!(s[0].count(Outcome::Pass), 1);
        assert_eq!(s[0].count(Outcome::Skip), 1);
        assert_eq!(s[0].count(Outcome::Fail), 1);
        assert_eq!(s[0].closed, Some(Outcome::Fail));
        assert!(!s[0].passed());
        // The second suite was cut off: missing result and no close.
        assert!(!s[1].passed());
        assert_eq!(s[1].problems.len(), 2);
    }

    #[test]
    fn a_skipped_plan_is_a_skip_not_a_missing_plan() {
        let text = "    # Subtest: a\n    1..0 # SKIP no device\nok 1 a # SKIP no device\n";
        let s = parse_ktap(text.lines());
        assert_eq!(s[0].plan, Some(0));
        assert_eq!(s[0].count(Outcome::Skip), 1);
        assert!(s[0].passed(), "{:?}", s[0].problems);
        let s = parse_kselftest("x", "TAP version 13\n1..0 # SKIP no counters\n");
        assert_eq!((s.plan, s.count(Outcome::Skip)), (Some(0), 1));
        assert_eq!(s.skipped.as_deref(), Some("no counters"));
        assert!(s.passed(), "{:?}", s.problems);
        let s = parse_kselftest("x", "1..1\nok 1 # SKIP no THP\n");
        assert_eq!(s.skipped, None, "only a 1..0 plan skips the whole suite");
        assert_eq!(plan("3"), Some((3, None)));
        assert_eq!(plan("0 # skip why"), Some((0, Some("why".into()))));
        assert_eq!(
            plan("2 # SKIP why"),
            Some((2, None)),
            "only 1..0 skips a suite"
        );
    }

    #[test]
    fn a_skip_without_a_name_is_named_by_its_reason() {
        // As kselftest.h's ksft_test_result_skip() prints it.
        assert_eq!(
            result_line("ok 3 # SKIP c 16kB: no mTHP order above it"),
            Some((Outcome::Skip, "c 16kB: no mTHP order above it".into()))
        );
        assert_eq!(
            result_line("ok 3 # skip why"),
            Some((Outcome::Skip, "why".into()))
        );
        assert_eq!(result_line("ok 3 # SKIP"), Some((Outcome::Skip, "".into())));
        assert_eq!(
            result_line("ok 3 name # SKIP why"),
            Some((Outcome::Skip, "name".into())),
            "a named skip keeps its name"
        );
        assert_eq!(
            result_line("ok 4 c, c vs rust # 12 shape bytes equal"),
            Some((Outcome::Pass, "c, c vs rust".into())),
            "a comment after the name is not a skip"
        );
        assert_eq!(
            result_line("not ok 5 rust 4k: a migration failed"),
            Some((Outcome::Fail, "rust 4k: a migration failed".into()))
        );
        let text = "TAP version 13\n1..3\nok 1 c thp: fine\nok 2 # SKIP rust thp: no THP\n\
                    not ok 3 rust-entry thp: data differs at 5\n\
                    # Totals: pass:1 fail:1 xfail:0 xpass:0 skip:1 error:0\n";
        let s = parse_kselftest("counted-work", text);
        let names: Vec<_> = s
            .cases
            .iter()
            .map(|c| (c.outcome, c.name.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                (Outcome::Pass, "c thp: fine"),
                (Outcome::Skip, "rust thp: no THP"),
                (Outcome::Fail, "rust-entry thp: data differs at 5"),
            ]
        );
    }

    #[test]
    fn ktap_passing_suite() {
        let text = "    # Subtest: a\n    1..1\n    ok 1 t\nok 1 a\n";
        let s = parse_ktap(text.lines());
        assert_eq!(s.len(), 1);
        assert!(s[0].passed(), "{:?}", s[0].problems);
    }

    #[test]
    fn kselftest_counts_and_missing() {
        let text = "TAP version 13\n1..3\n# Starting 3 tests\n#  RUN x\nok 1 hmm.a\n\
                    ok 2 hmm.b # SKIP no coherent device\n# PASSED\n";
        let s = parse_kselftest("hmm-tests", text);
        assert_eq!((s.count(Outcome::Pass), s.count(Outcome::Skip)), (1, 1));
        assert!(!s.passed(), "one result is missing");
        let text = "1..1\nnot ok 1 hmm.c\n";
        let s = parse_kselftest("hmm-tests", text);
        assert_eq!(s.count(Outcome::Fail), 1);
        assert!(!s.passed());
        let s = parse_kselftest("none", "garbage\n");
        assert!(!s.passed(), "no plan is a failure");
    }

    #[test]
    fn kernel_log_reports() {
        let log = "[    0.1] Lock dependency validator: Copyright (c) 2006 Red Hat, Inc.\n\
                   [    0.2] ... MAX_LOCKDEP_SUBCLASSES:  8\n\
                   [    5.0] ------------[ cut here ]------------\n\
                   [    5.1] WARNING: CPU: 0 PID: 1 at lib/test_hmm.c:10 dmirror_init+0x1/0x2\n\
                   [    5.2] Call Trace:\n\
                   [    6.0] ok 1 fine\n";
        let r = kernel_reports(log.lines());
        assert_eq!(r.len(), 2);
        assert!(r[0].starts_with("WARNING: CPU: 0"));
        assert!(kernel_reports(["[ 1.0] BUG: sleeping function called"]).len() == 1);
        assert!(kernel_reports(["[ 1.0] all good"]).is_empty());
        assert!(kernel_reports(["[ 0.1] rcu: \tRCU lockdep checking is enabled."]).is_empty());
    }

    #[test]
    fn timestamps() {
        assert_eq!(strip_timestamp("[   12.345678] hello\r"), "hello");
        assert_eq!(strip_timestamp("[x] hello"), "[x] hello");
        assert_eq!(strip_timestamp("    ok 1 a"), "    ok 1 a");
    }
}
