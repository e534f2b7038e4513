//! The explicit list of corpus steps allowed to fail, with the reason each one fails.

use std::collections::BTreeMap;

use anyhow::{Context, bail};

use crate::corpus::{StepId, StepList};

pub const EXPECTED_FAILURES_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/conformance/expected_failures.tsv"
);

/// Parses `list<TAB>step<TAB>reason` lines; `#` comments, blank lines and the header are skipped.
pub fn parse_expected_failures(text: &str) -> anyhow::Result<BTreeMap<StepId, String>> {
    let mut failures = BTreeMap::new();
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || line.starts_with("list\tstep\t") {
            continue;
        }
        let mut fields = line.splitn(3, '\t');
        let (Some(list), Some(step), Some(reason)) = (fields.next(), fields.next(), fields.next())
        else {
            bail!("expected_failures.tsv line {line_no}: expected list<TAB>step<TAB>reason");
        };
        let list = StepList::from_name(list.trim()).with_context(|| {
            format!("expected_failures.tsv line {line_no}: unknown list {list:?}")
        })?;
        let step = step
            .trim()
            .parse()
            .with_context(|| format!("expected_failures.tsv line {line_no}: bad step {step:?}"))?;
        let reason = reason.trim();
        if reason.is_empty() {
            bail!("expected_failures.tsv line {line_no}: a reason is required");
        }
        let id = StepId { list, step };
        if failures.insert(id, reason.to_owned()).is_some() {
            bail!("expected_failures.tsv line {line_no}: {id} is listed twice");
        }
    }
    Ok(failures)
}

/// Steps whose outcome differs when the hub refuses references to missing resources (its default):
/// listed with a reason they fail, or with reason `-` to drop a base entry that then passes.
pub const STRICT_OVERLAY_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/conformance/expected_failures_strict.tsv"
);

/// The base list with the strict-references overlay applied.
pub fn load_strict_expected_failures() -> anyhow::Result<BTreeMap<StepId, String>> {
    let mut failures = load_expected_failures()?;
    let text = std::fs::read_to_string(STRICT_OVERLAY_PATH)
        .with_context(|| format!("reading {STRICT_OVERLAY_PATH}"))?;
    for (id, reason) in parse_expected_failures(&text)? {
        if reason == "-" {
            if failures.remove(&id).is_none() {
                bail!("{STRICT_OVERLAY_PATH}: {id} is dropped but not in the base list");
            }
        } else if failures.insert(id, reason).is_some() {
            bail!("{STRICT_OVERLAY_PATH}: {id} is already in the base list");
        }
    }
    Ok(failures)
}

pub fn load_expected_failures() -> anyhow::Result<BTreeMap<StepId, String>> {
    let text = std::fs::read_to_string(EXPECTED_FAILURES_PATH)
        .with_context(|| format!("reading {EXPECTED_FAILURES_PATH}"))?;
    parse_expected_failures(&text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus;

    #[test]
    fn parser_requires_reasons_and_rejects_duplicates() -> anyhow::Result<()> {
        let parsed = parse_expected_failures(
            "list\tstep\treason\n# comment\n\nfull_api_test_list\t120\tcorpus bug: no such route\n",
        )?;
        assert_eq!(parsed.len(), 1);
        assert!(parse_expected_failures("full_api_test_list\t1\t \n").is_err());
        assert!(
            parse_expected_failures("full_api_test_list\t1\tx\nfull_api_test_list\t1\ty\n")
                .is_err()
        );
        assert!(parse_expected_failures("test_query_list\t1\tx\n").is_err());
        Ok(())
    }

    #[test]
    fn every_listed_step_exists_in_the_sequence() -> anyhow::Result<()> {
        let steps: Vec<StepId> = corpus::load_sequence()?.iter().map(|row| row.id).collect();
        let missing: Vec<String> = load_expected_failures()?
            .keys()
            .filter(|id| !steps.contains(id))
            .map(StepId::to_string)
            .collect();
        assert!(
            missing.is_empty(),
            "listed but not in test_sequence.tsv: {missing:?}"
        );
        Ok(())
    }
}
