//! Reading the upstream pytest corpus: the run order (`test_sequence.tsv`) and each step's input JSON.
//!
//! The corpus lives outside the repository (CI checks `shared/` out beside it); nothing here is copied.

use std::fmt;
use std::path::PathBuf;

use anyhow::{Context, bail};
use serde_json::Value;

/// Root of the shared reference material, relative to this crate.
pub const CORPUS_ROOT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/emco-reference"
);

pub fn sequence_path() -> PathBuf {
    PathBuf::from(CORPUS_ROOT)
        .join("generated-from-jacobtrvl-emco/scripts/integration_test/test_sequence.tsv")
}

/// Where `full_api_test` keeps one directory of input JSON per test-suite directory.
pub fn inputs_dir() -> PathBuf {
    PathBuf::from(CORPUS_ROOT)
        .join("jacobtrvl-emco/scripts/integration_test/inputs/data/full_api_test")
}

/// Directories searched, in order, for the archives the multipart scripts attach. Upstream reads
/// them from `tgz_files/`, which its `setup.sh` fills; the built tarballs sit in the generated tree.
pub fn archive_dirs() -> [PathBuf; 2] {
    let root = PathBuf::from(CORPUS_ROOT);
    [
        root.join("generated-from-jacobtrvl-emco/tarballs"),
        root.join("jacobtrvl-emco/scripts/integration_test/tgz_files"),
    ]
}

/// The two lists the replay runs; the query lists in the same file refer to inputs not kept in `shared/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StepList {
    FullApi,
    Cleanup,
}

impl StepList {
    pub fn name(self) -> &'static str {
        match self {
            StepList::FullApi => "full_api_test_list",
            StepList::Cleanup => "cleanup_test_list",
        }
    }

    pub fn from_name(name: &str) -> Option<StepList> {
        match name {
            "full_api_test_list" => Some(StepList::FullApi),
            "cleanup_test_list" => Some(StepList::Cleanup),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StepId {
    pub list: StepList,
    pub step: u32,
}

impl fmt::Display for StepId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.list.name(), self.step)
    }
}

/// One row of `test_sequence.tsv`: which script runs with which input file.
#[derive(Clone, Debug)]
pub struct SequenceRow {
    pub id: StepId,
    pub suite_dir: String,
    pub script: String,
    pub input: String,
}

impl SequenceRow {
    pub fn input_path(&self) -> PathBuf {
        inputs_dir().join(&self.suite_dir).join(&self.input)
    }

    pub fn label(&self) -> String {
        format!(
            "{} {}/{} {}",
            self.id, self.suite_dir, self.script, self.input
        )
    }
}

/// Parses the sequence file and returns the full-API rows then the cleanup rows, each in step order.
pub fn parse_sequence(text: &str) -> anyhow::Result<Vec<SequenceRow>> {
    let mut rows = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        if line.trim().is_empty() || (index == 0 && line.starts_with("list\t")) {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        let [list, step, suite_dir, script, input] = fields.as_slice() else {
            bail!(
                "test_sequence.tsv line {line_no}: expected 5 tab-separated fields, got {}",
                fields.len()
            );
        };
        let Some(list) = StepList::from_name(list) else {
            continue;
        };
        let step: u32 = step.parse().with_context(|| {
            format!("test_sequence.tsv line {line_no}: bad step number {step:?}")
        })?;
        rows.push(SequenceRow {
            id: StepId { list, step },
            suite_dir: suite_dir.trim().to_owned(),
            script: script.trim().to_owned(),
            // upstream's test_list.py has one name with trailing blanks; the file on disk has none
            input: input.trim().to_owned(),
        });
    }
    rows.sort_by_key(|row| row.id);
    Ok(rows)
}

/// The status codes a case accepts: an integer, or a string such as `"202, 200"` (lifecycle scripts).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpectedStatus(pub Vec<u16>);

impl ExpectedStatus {
    fn from_json(value: &Value) -> anyhow::Result<ExpectedStatus> {
        match value {
            Value::Number(n) => {
                let code = n
                    .as_u64()
                    .and_then(|c| u16::try_from(c).ok())
                    .with_context(|| format!("ResponseCode {n} is not an HTTP status"))?;
                Ok(ExpectedStatus(vec![code]))
            }
            Value::String(s) => {
                let codes = s
                    .split(',')
                    .map(|part| part.trim().parse::<u16>())
                    .collect::<Result<Vec<_>, _>>()
                    .with_context(|| format!("ResponseCode {s:?} is not a list of statuses"))?;
                Ok(ExpectedStatus(codes))
            }
            other => bail!("ResponseCode {other} is neither a number nor a string"),
        }
    }

    pub fn accepts(&self, status: u16) -> bool {
        self.0.contains(&status)
    }
}

impl fmt::Display for ExpectedStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let codes: Vec<String> = self.0.iter().map(u16::to_string).collect();
        f.write_str(&codes.join(" or "))
    }
}

/// One entry of an input's `type-metadata` array: one HTTP request and what it must return.
#[derive(Clone, Debug)]
pub struct CorpusCase {
    pub request_body: Option<Value>,
    pub request_file: Option<String>,
    pub status: ExpectedStatus,
    pub response_text: Option<Value>,
}

/// An input file. The scripts only ever read entry 0 and send one request per `type-metadata` item.
#[derive(Clone, Debug)]
pub struct StepInput {
    pub anchor: String,
    pub cases: Vec<CorpusCase>,
}

pub fn parse_input(text: &str) -> anyhow::Result<StepInput> {
    let document: Value = serde_json::from_str(text).context("input is not JSON")?;
    let entry = document
        .as_array()
        .and_then(|entries| entries.first())
        .context("input is not a non-empty JSON array")?;
    let anchor = entry
        .get("anchor")
        .and_then(Value::as_str)
        .context("entry 0 has no string \"anchor\"")?
        .to_owned();
    let items = entry
        .get("type-metadata")
        .and_then(Value::as_array)
        .context("entry 0 has no \"type-metadata\" array")?;
    let mut cases = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let status = item
            .get("ResponseCode")
            .with_context(|| format!("type-metadata[{index}] has no ResponseCode"))
            .and_then(ExpectedStatus::from_json)?;
        let request_file = match item.get("RequestBodyFile") {
            None => None,
            Some(Value::String(name)) => Some(name.clone()),
            Some(other) => bail!("type-metadata[{index}].RequestBodyFile is not a string: {other}"),
        };
        cases.push(CorpusCase {
            request_body: item.get("RequestBody").cloned(),
            request_file,
            status,
            response_text: item.get("ResponseText").cloned(),
        });
    }
    if cases.is_empty() {
        bail!("type-metadata is empty: the script would send nothing");
    }
    Ok(StepInput { anchor, cases })
}

pub fn load_sequence() -> anyhow::Result<Vec<SequenceRow>> {
    let path = sequence_path();
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    parse_sequence(&text)
}

pub fn load_input(row: &SequenceRow) -> anyhow::Result<StepInput> {
    let path = row.input_path();
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    parse_input(&text).with_context(|| format!("parsing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_parser_keeps_both_lists_in_step_order_and_skips_query_lists() -> anyhow::Result<()>
    {
        let text = "list\tstep\ttest_suite_dir\tpytest_script\tinput_json\n\
                    cleanup_test_list\t1\tproject\ttest_deleteProjectsByName.py\ttest_deleteProjectsByName.json\n\
                    full_api_test_list\t2\tproject\ttest_getProjects.py\ttest_getProjects.json  \n\
                    full_api_test_list\t1\tproject\ttest_postProjects.py\ttest_postProjects.json\n\
                    test_query_list\t1\tproject\ttest_postProjects.py\ttest_postProjects.json\n";
        let rows = parse_sequence(text)?;
        let ids: Vec<String> = rows.iter().map(|r| r.id.to_string()).collect();
        assert_eq!(
            ids,
            [
                "full_api_test_list#1",
                "full_api_test_list#2",
                "cleanup_test_list#1"
            ]
        );
        assert_eq!(rows[1].input, "test_getProjects.json");
        assert!(parse_sequence("full_api_test_list\t1\tproject\n").is_err());
        Ok(())
    }

    #[test]
    fn status_strings_list_every_accepted_code() -> anyhow::Result<()> {
        let input = parse_input(
            r#"[{"anchor": "a", "type-metadata": [{"ResponseCode": "202, 200"}, {"ResponseCode": 409}]}]"#,
        )?;
        assert_eq!(input.cases[0].status, ExpectedStatus(vec![202, 200]));
        assert!(input.cases[0].status.accepts(200));
        assert!(!input.cases[1].status.accepts(200));
        assert!(parse_input(r#"[{"anchor": "a", "type-metadata": []}]"#).is_err());
        Ok(())
    }

    #[test]
    fn the_real_sequence_has_478_full_and_103_cleanup_steps_numbered_without_gaps()
    -> anyhow::Result<()> {
        let rows = load_sequence()?;
        for (list, expected) in [(StepList::FullApi, 478u32), (StepList::Cleanup, 103)] {
            let steps: Vec<u32> = rows
                .iter()
                .filter(|r| r.id.list == list)
                .map(|r| r.id.step)
                .collect();
            assert_eq!(steps, (1..=expected).collect::<Vec<_>>(), "{}", list.name());
        }
        Ok(())
    }

    #[test]
    fn every_referenced_input_exists_and_parses() -> anyhow::Result<()> {
        let mut problems = Vec::new();
        for row in load_sequence()? {
            if let Err(e) = load_input(&row) {
                problems.push(format!("{}: {e:#}", row.label()));
            }
        }
        assert!(
            problems.is_empty(),
            "unreadable inputs:\n{}",
            problems.join("\n")
        );
        Ok(())
    }
}
