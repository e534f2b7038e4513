//! Safe, in-memory reading of untrusted Helm chart and profile archives (`.tgz` / `.tar.gz`).
//!
//! Apps and app profiles arrive as uploaded gzip-compressed tar archives. Nothing here touches the
//! filesystem: [`read_tar_gz`] decompresses and walks the archive while enforcing
//! [`ArchiveLimits`], and returns every regular file with a normalized relative path. Anything that
//! could escape an extraction directory or alias another file (absolute paths, `..`, links,
//! devices, duplicates) is rejected rather than repaired, so a later extraction of the returned
//! [`Archive`] cannot be steered outside its target directory.
//!
//! [`read_chart`] and [`read_profile`] add the layout rules the orchestrator relies on when it
//! renders an app: a chart is one top-level directory holding `Chart.yaml` (what `helm package`
//! produces), and a profile has `manifest.yaml` at its root naming an override values file that
//! the archive contains.

use std::cell::Cell;
use std::collections::HashSet;
use std::io::{self, Read};

use flate2::read::MultiGzDecoder;
use serde::Deserialize;
use tar::EntryType;

/// The two bytes every gzip member starts with (RFC 1952).
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Name of the chart metadata file inside a chart's top-level directory.
pub const CHART_FILE_NAME: &str = "Chart.yaml";

/// Name of the profile manifest at the root of a profile archive (upstream `ManifestFileName`).
pub const PROFILE_MANIFEST_FILE_NAME: &str = "manifest.yaml";

/// The only profile manifest version upstream documents.
pub const PROFILE_MANIFEST_VERSION: &str = "v1";

/// Resource limits applied while reading an archive.
///
/// Every limit is checked while streaming, before the corresponding memory is allocated, so an
/// archive that breaks a limit costs at most the limit in memory and time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveLimits {
    /// Largest accepted compressed upload, in bytes.
    pub max_compressed: usize,
    /// Largest accepted decompressed tar stream, in bytes. This counts everything gzip yields
    /// (tar headers, long-name and PAX records, padding and file contents), so it bounds both the
    /// returned file contents and the work done on a gzip bomb.
    pub max_uncompressed: u64,
    /// Most tar entries (files, directories and PAX global headers) accepted.
    pub max_entries: usize,
    /// Longest accepted normalized path, in bytes.
    pub max_path_len: usize,
    /// Most path components accepted in a normalized path (`a/b/c` has three).
    pub max_depth: usize,
}

impl Default for ArchiveLimits {
    /// 16 MiB compressed, 64 MiB decompressed, 10 000 entries, 1 024-byte paths, 32 levels deep.
    ///
    /// The largest upstream example chart (kube-prometheus-stack) is 362 KB compressed, 3.9 MB
    /// decompressed, 260 entries, 108-byte paths and 7 levels deep, so these leave ample headroom
    /// for real charts while keeping a single upload's cost bounded.
    fn default() -> Self {
        Self {
            max_compressed: 16 * 1024 * 1024,
            max_uncompressed: 64 * 1024 * 1024,
            max_entries: 10_000,
            max_path_len: 1024,
            max_depth: 32,
        }
    }
}

/// One regular file from an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveFile {
    /// Normalized relative path: `/`-separated, no leading `./` or `/`, no empty, `.` or `..`
    /// components.
    pub path: String,
    /// The file's bytes.
    pub contents: Vec<u8>,
    /// Permission bits from the tar header (`0o777` mask; setuid, setgid and sticky bits dropped).
    pub mode: u32,
}

/// The regular files of an archive, in archive order. Directories are implied by file paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Archive {
    /// Every regular file, in the order the archive lists them; paths are unique.
    pub files: Vec<ArchiveFile>,
}

impl Archive {
    /// The file at the given normalized path, if the archive has one.
    pub fn get(&self, path: &str) -> Option<&ArchiveFile> {
        self.files.iter().find(|file| file.path == path)
    }

    /// Sum of the sizes of all file contents, in bytes.
    pub fn total_size(&self) -> u64 {
        self.files
            .iter()
            .map(|file| file.contents.len() as u64)
            .sum()
    }
}

/// A Helm chart archive as `helm package` makes it: one top-level directory holding `Chart.yaml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chart {
    /// The `name` field of `Chart.yaml`, or the top-level directory's name when that field is
    /// missing or empty. Untrusted text: not a path.
    pub name: String,
    /// The `version` field of `Chart.yaml`, if present.
    pub version: Option<String>,
    /// The single top-level directory (e.g. `collectd`); upstream renders `<extracted>/<app name>`,
    /// so callers may want to compare this with the app's name.
    pub root_dir: String,
    /// All files of the archive; paths still include `root_dir`.
    pub archive: Archive,
}

/// An app profile archive: `manifest.yaml` at the root naming an override values file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// The parsed and checked `manifest.yaml`.
    pub manifest: ProfileManifest,
    /// All files of the archive, including `manifest.yaml`.
    pub archive: Archive,
}

impl Profile {
    /// Contents of the override values file the manifest names.
    pub fn values(&self) -> Option<&[u8]> {
        self.archive
            .get(&self.manifest.values_path)
            .map(|file| file.contents.as_slice())
    }
}

/// The checked contents of a profile's `manifest.yaml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileManifest {
    /// The manifest's `version` field, if given (only `v1` is accepted).
    pub version: Option<String>,
    /// Normalized path of the override values file (`type.values`); present in the archive.
    pub values_path: String,
    /// Files the profile copies into the chart before rendering (`type.configresource`).
    pub config_resources: Vec<ConfigResource>,
}

/// One `type.configresource` item: a profile file copied over a path inside the chart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigResource {
    /// Normalized path of the source file in the profile archive; present in the archive.
    pub file_path: String,
    /// Normalized relative destination path inside the chart directory.
    pub chart_path: String,
}

/// Why an archive was rejected. Variants about a single entry name its path as written in the
/// archive (lossily decoded if it is not UTF-8).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// The upload is bigger than [`ArchiveLimits::max_compressed`].
    #[error("archive is {size} bytes, more than the {limit}-byte limit for uploads")]
    CompressedTooLarge {
        /// Size of the upload.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The upload is not gzip data.
    #[error("archive is not gzip-compressed (expected a .tgz or .tar.gz): {reason}")]
    NotGzip {
        /// What was wrong.
        reason: String,
    },
    /// The gzip stream broke part way (bad deflate data, CRC mismatch, truncation).
    #[error("gzip stream is corrupt after entry {after:?}: {reason}")]
    CorruptGzip {
        /// Path of the last entry read before the failure, if any.
        after: Option<String>,
        /// What the decompressor reported.
        reason: String,
    },
    /// The decompressed data does not start with a tar header.
    #[error("gzip data does not hold a tar archive: {reason}")]
    NotTar {
        /// What the tar reader reported.
        reason: String,
    },
    /// A tar header after the first one is malformed.
    #[error("tar archive is corrupt after entry {after:?}: {reason}")]
    CorruptTar {
        /// Path of the last entry read before the failure, if any.
        after: Option<String>,
        /// What the tar reader reported.
        reason: String,
    },
    /// An entry's header fields could not be decoded.
    #[error("entry {path:?} has an invalid tar header: {reason}")]
    InvalidHeader {
        /// The entry's path.
        path: String,
        /// What was wrong.
        reason: String,
    },
    /// The decompressed stream grew past [`ArchiveLimits::max_uncompressed`].
    #[error("archive decompresses to more than {limit} bytes (stopped at entry {path:?})")]
    UncompressedTooLarge {
        /// The entry being read when the limit was hit, if any.
        path: Option<String>,
        /// The configured limit.
        limit: u64,
    },
    /// An entry declares more content than the decompression budget has left.
    #[error(
        "entry {path:?} declares {size} bytes, more than the {remaining} bytes left of the \
         {limit}-byte decompressed limit"
    )]
    EntryTooLarge {
        /// The entry's path.
        path: String,
        /// Size the entry declares.
        size: u64,
        /// Budget left when the entry was reached.
        remaining: u64,
        /// The configured limit.
        limit: u64,
    },
    /// The archive has more entries than [`ArchiveLimits::max_entries`].
    #[error("entry {path:?} is past the limit of {limit} archive entries")]
    TooManyEntries {
        /// The first entry past the limit.
        path: String,
        /// The configured limit.
        limit: usize,
    },
    /// An entry's path is not valid UTF-8.
    #[error("entry path {path:?} is not valid UTF-8")]
    PathNotUtf8 {
        /// The path, lossily decoded.
        path: String,
    },
    /// An entry's path starts with `/`.
    #[error("entry {path:?} has an absolute path")]
    AbsolutePath {
        /// The entry's path.
        path: String,
    },
    /// An entry's path has a `..` component.
    #[error("entry {path:?} has a `..` path component")]
    ParentDirComponent {
        /// The entry's path.
        path: String,
    },
    /// An entry's path is unusable for another reason (NUL, backslash, empty file name...).
    #[error("entry {path:?} has an invalid path: {reason}")]
    InvalidPath {
        /// The entry's path.
        path: String,
        /// What was wrong.
        reason: &'static str,
    },
    /// An entry's normalized path is longer than [`ArchiveLimits::max_path_len`].
    #[error("entry {path:?} has a {len}-byte path, more than the {limit}-byte limit")]
    PathTooLong {
        /// The entry's path.
        path: String,
        /// Length of the normalized path.
        len: usize,
        /// The configured limit.
        limit: usize,
    },
    /// An entry's normalized path has more components than [`ArchiveLimits::max_depth`].
    #[error("entry {path:?} is {depth} levels deep, more than the limit of {limit}")]
    PathTooDeep {
        /// The entry's path.
        path: String,
        /// Number of components of the normalized path.
        depth: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A symbolic link entry.
    #[error("entry {path:?} is a symbolic link (to {target:?}); links are not allowed")]
    SymbolicLink {
        /// The entry's path.
        path: String,
        /// The link target, lossily decoded.
        target: String,
    },
    /// A hard link entry.
    #[error("entry {path:?} is a hard link (to {target:?}); links are not allowed")]
    HardLink {
        /// The entry's path.
        path: String,
        /// The link target, lossily decoded.
        target: String,
    },
    /// A character or block device entry.
    #[error("entry {path:?} is a device file")]
    DeviceFile {
        /// The entry's path.
        path: String,
    },
    /// Any other entry that is neither a regular file nor a directory (FIFO, sparse file...).
    #[error(
        "entry {path:?} has unsupported type {entry_type}; only files and directories are allowed"
    )]
    UnsupportedEntryType {
        /// The entry's path.
        path: String,
        /// Description of the entry type.
        entry_type: String,
    },
    /// Two entries normalize to the same path.
    #[error("entry {path:?} appears more than once")]
    DuplicatePath {
        /// The normalized path.
        path: String,
    },
    /// A path is used both as a file and as a directory.
    #[error(
        "entry {path:?} conflicts with {other:?}: a path cannot be both a file and a directory"
    )]
    PathConflict {
        /// The later entry's normalized path.
        path: String,
        /// The earlier path it collides with.
        other: String,
    },
    /// A file's contents end before the size its header declares.
    #[error("entry {path:?} is truncated: {actual} of {declared} bytes present")]
    Truncated {
        /// The entry's path.
        path: String,
        /// Size the header declares.
        declared: u64,
        /// Bytes actually present.
        actual: u64,
    },
    /// The archive holds no regular file.
    #[error("archive holds no files")]
    EmptyArchive,
    /// A chart archive has a file at its root or more than one top-level directory.
    #[error(
        "chart archive must hold exactly one top-level directory, but entry {path:?} is outside \
         {root_dir:?}"
    )]
    NotSingleTopLevelDir {
        /// The first top-level directory seen.
        root_dir: String,
        /// The offending entry's normalized path.
        path: String,
    },
    /// A chart archive's top-level directory lacks `Chart.yaml`.
    #[error("chart archive has no {path:?}")]
    MissingChartYaml {
        /// The path where `Chart.yaml` was expected.
        path: String,
    },
    /// `Chart.yaml` is not a YAML mapping with the expected field types.
    #[error("{path:?} is not a valid chart description: {reason}")]
    InvalidChartYaml {
        /// The path of `Chart.yaml`.
        path: String,
        /// What the YAML parser reported.
        reason: String,
    },
    /// A profile archive has no `manifest.yaml` at its root.
    #[error("profile archive has no {path:?} at its root")]
    MissingManifest {
        /// The expected path.
        path: String,
    },
    /// `manifest.yaml` cannot be parsed or has an unusable field.
    #[error("{path:?} is not a valid profile manifest: {reason}")]
    InvalidManifest {
        /// The path of the manifest.
        path: String,
        /// What was wrong.
        reason: String,
    },
    /// The manifest names a file that the profile archive does not hold.
    #[error("{manifest:?} names {path:?}, which is not a file in the profile archive")]
    MissingProfileFile {
        /// The normalized path the manifest names.
        path: String,
        /// The manifest's path.
        manifest: String,
    },
}

impl ArchiveError {
    /// Whether the archive was refused for its size or shape against [`ArchiveLimits`] rather
    /// than for being malformed or unsafe (an API may answer these with 413 instead of 422).
    pub fn is_limit_exceeded(&self) -> bool {
        matches!(
            self,
            ArchiveError::CompressedTooLarge { .. }
                | ArchiveError::UncompressedTooLarge { .. }
                | ArchiveError::EntryTooLarge { .. }
                | ArchiveError::TooManyEntries { .. }
                | ArchiveError::PathTooLong { .. }
                | ArchiveError::PathTooDeep { .. }
        )
    }
}

/// Decompresses and reads a `.tar.gz` archive, enforcing `limits` and the safety rules of this
/// module, and returns its regular files.
///
/// Accepts archives made by `helm package` and `tar -czf` (with or without `./` prefixes, ustar,
/// GNU long names and PAX records; PAX global headers are skipped). Rejects links, devices and
/// other special entries, absolute or `..` paths, duplicate or conflicting paths, archives with no
/// file, and anything past the limits.
pub fn read_tar_gz(bytes: &[u8], limits: &ArchiveLimits) -> Result<Archive, ArchiveError> {
    let (result, decompressed) = read_tar_gz_metered(bytes, limits);
    match &result {
        Ok(archive) => tracing::debug!(
            files = archive.files.len(),
            bytes = archive.total_size(),
            decompressed,
            "archive accepted"
        ),
        Err(error) => tracing::debug!(%error, decompressed, "archive rejected"),
    }
    result
}

/// [`read_tar_gz`], also returning how many bytes were decompressed (for tests and logs).
fn read_tar_gz_metered(
    bytes: &[u8],
    limits: &ArchiveLimits,
) -> (Result<Archive, ArchiveError>, u64) {
    let meter = StreamMeter::default();
    let result = read_with_meter(bytes, limits, &meter);
    (result, meter.decompressed.get())
}

fn read_with_meter(
    bytes: &[u8],
    limits: &ArchiveLimits,
    meter: &StreamMeter,
) -> Result<Archive, ArchiveError> {
    if bytes.len() > limits.max_compressed {
        return Err(ArchiveError::CompressedTooLarge {
            size: bytes.len(),
            limit: limits.max_compressed,
        });
    }
    if !bytes.starts_with(&GZIP_MAGIC) {
        return Err(ArchiveError::NotGzip {
            reason: "missing gzip magic bytes".to_owned(),
        });
    }

    let reader = MeteredReader {
        inner: MultiGzDecoder::new(bytes),
        meter,
        limit: limits.max_uncompressed,
    };
    let mut tar_reader = tar::Archive::new(reader);
    let mut collector = Collector::new(limits);
    let mut progress = Progress::default();

    let walk = walk_entries(
        &mut tar_reader,
        meter,
        limits,
        &mut collector,
        &mut progress,
    );
    if let Err(failure) = walk {
        return Err(failure.into_error(meter, limits, &progress));
    }

    // The tar reader stops at the end-of-archive marker; reading the rest lets gzip verify its
    // CRC and length trailer, so a corrupted or truncated upload is not half-accepted. The meter
    // still bounds this, so trailing zeros cannot be used as a bomb.
    let mut rest = tar_reader.into_inner();
    if let Err(error) = io::copy(&mut rest, &mut io::sink()) {
        progress.in_entry = None;
        return Err(Failure::Io(error).into_error(meter, limits, &progress));
    }

    if collector.files.is_empty() {
        return Err(ArchiveError::EmptyArchive);
    }
    Ok(Archive {
        files: collector.files,
    })
}

/// Reads a chart archive: exactly one top-level directory, holding `Chart.yaml`.
pub fn read_chart(bytes: &[u8], limits: &ArchiveLimits) -> Result<Chart, ArchiveError> {
    let archive = read_tar_gz(bytes, limits)?;
    let root_dir = single_top_level_dir(&archive)?;
    let chart_yaml_path = format!("{root_dir}/{CHART_FILE_NAME}");
    let chart_yaml =
        archive
            .get(&chart_yaml_path)
            .ok_or_else(|| ArchiveError::MissingChartYaml {
                path: chart_yaml_path.clone(),
            })?;
    let metadata: ChartYaml = serde_saphyr::from_slice(&chart_yaml.contents).map_err(|error| {
        ArchiveError::InvalidChartYaml {
            path: chart_yaml_path.clone(),
            reason: error.to_string(),
        }
    })?;
    let name = metadata
        .name
        .map(|name| name.0)
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| root_dir.clone());
    Ok(Chart {
        name,
        version: metadata.version.map(|version| version.0),
        root_dir,
        archive,
    })
}

/// Reads a profile archive: `manifest.yaml` at the root, naming an override values file (and
/// optional config resources) that the archive holds.
pub fn read_profile(bytes: &[u8], limits: &ArchiveLimits) -> Result<Profile, ArchiveError> {
    let archive = read_tar_gz(bytes, limits)?;
    let manifest_file =
        archive
            .get(PROFILE_MANIFEST_FILE_NAME)
            .ok_or_else(|| ArchiveError::MissingManifest {
                path: PROFILE_MANIFEST_FILE_NAME.to_owned(),
            })?;
    let invalid = |reason: String| ArchiveError::InvalidManifest {
        path: PROFILE_MANIFEST_FILE_NAME.to_owned(),
        reason,
    };
    let raw: Option<ManifestYaml> = serde_saphyr::from_slice(&manifest_file.contents)
        .map_err(|error| invalid(error.to_string()))?;
    let raw = raw.ok_or_else(|| invalid("the manifest is empty".to_owned()))?;

    let version = raw.version.map(|version| version.0);
    if let Some(version) = &version
        && version != PROFILE_MANIFEST_VERSION
    {
        return Err(invalid(format!(
            "version {version:?} is not supported (expected {PROFILE_MANIFEST_VERSION:?})"
        )));
    }
    let overrides = raw.overrides.unwrap_or_default();
    let values = overrides
        .values
        .filter(|values| !values.is_empty())
        .ok_or_else(|| invalid("type.values (the override values file) is missing".to_owned()))?;
    let values_path = manifest_path(&values, "type.values").map_err(invalid)?;
    require_profile_file(&archive, &values_path)?;

    let mut config_resources = Vec::new();
    for (index, resource) in overrides
        .config_resources
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let file_path = manifest_path(
            &resource.file_path,
            &format!("type.configresource[{index}].filepath"),
        )
        .map_err(invalid)?;
        let chart_path = manifest_path(
            &resource.chart_path,
            &format!("type.configresource[{index}].chartpath"),
        )
        .map_err(invalid)?;
        require_profile_file(&archive, &file_path)?;
        config_resources.push(ConfigResource {
            file_path,
            chart_path,
        });
    }

    Ok(Profile {
        manifest: ProfileManifest {
            version,
            values_path,
            config_resources,
        },
        archive,
    })
}

/// The fields of `Chart.yaml` this crate uses; Helm defines many more, which are ignored.
#[derive(Deserialize)]
struct ChartYaml {
    name: Option<LenientString>,
    version: Option<LenientString>,
}

/// The fields of a profile `manifest.yaml`, as upstream's `profileOverride` reads them.
#[derive(Deserialize)]
struct ManifestYaml {
    version: Option<LenientString>,
    #[serde(rename = "type")]
    overrides: Option<ManifestOverrides>,
}

#[derive(Deserialize, Default)]
struct ManifestOverrides {
    values: Option<String>,
    #[serde(rename = "configresource")]
    config_resources: Option<Vec<ManifestConfigResource>>,
}

#[derive(Deserialize)]
struct ManifestConfigResource {
    #[serde(rename = "filepath")]
    file_path: String,
    #[serde(rename = "chartpath")]
    chart_path: String,
}

/// A YAML scalar read as text, so `version: 1.2` or `version: 1` is accepted like `version: "1"`;
/// upstream reads these through a YAML-to-JSON conversion that is equally forgiving.
struct LenientString(String);

impl<'de> Deserialize<'de> for LenientString {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl serde::de::Visitor<'_> for ScalarVisitor {
            type Value = LenientString;
            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("a string or number")
            }
            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Self::Value, E> {
                Ok(LenientString(value.to_owned()))
            }
            fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<Self::Value, E> {
                Ok(LenientString(value.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<Self::Value, E> {
                Ok(LenientString(value.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<Self::Value, E> {
                Ok(LenientString(value.to_string()))
            }
        }
        deserializer.deserialize_any(ScalarVisitor)
    }
}

/// Normalizes a path written in a manifest; it must stay inside the archive (or chart).
fn manifest_path(raw: &str, field: &str) -> Result<String, String> {
    match normalize_path(raw) {
        Ok(path) if !path.is_empty() => Ok(path),
        Ok(_) => Err(format!("{field} {raw:?} names no file")),
        Err(problem) => Err(format!(
            "{field} {raw:?} is not a safe relative path: {problem}"
        )),
    }
}

fn require_profile_file(archive: &Archive, path: &str) -> Result<(), ArchiveError> {
    if archive.get(path).is_some() {
        Ok(())
    } else {
        Err(ArchiveError::MissingProfileFile {
            path: path.to_owned(),
            manifest: PROFILE_MANIFEST_FILE_NAME.to_owned(),
        })
    }
}

/// The one directory all files of a chart archive live under.
fn single_top_level_dir(archive: &Archive) -> Result<String, ArchiveError> {
    let mut root_dir: Option<&str> = None;
    for file in &archive.files {
        let Some((top, _)) = file.path.split_once('/') else {
            return Err(ArchiveError::NotSingleTopLevelDir {
                root_dir: root_dir.unwrap_or_default().to_owned(),
                path: file.path.clone(),
            });
        };
        match root_dir {
            None => root_dir = Some(top),
            Some(root) if root == top => {}
            Some(root) => {
                return Err(ArchiveError::NotSingleTopLevelDir {
                    root_dir: root.to_owned(),
                    path: file.path.clone(),
                });
            }
        }
    }
    // read_tar_gz never returns an archive without files, so a root was found.
    root_dir
        .map(str::to_owned)
        .ok_or(ArchiveError::EmptyArchive)
}

/// Counts decompressed bytes and remembers why reading stopped, so errors that the tar reader
/// wraps can still be told apart (bomb, broken gzip, broken tar).
#[derive(Default)]
struct StreamMeter {
    decompressed: Cell<u64>,
    limit_hit: Cell<bool>,
    gzip_failure: Cell<Option<io::ErrorKind>>,
}

impl StreamMeter {
    fn remaining(&self, limit: u64) -> u64 {
        limit.saturating_sub(self.decompressed.get())
    }
}

/// A reader that fails once more than `limit` bytes have come out of `inner`. It asks `inner` for
/// at most one byte past the limit, so a gzip bomb is never inflated much beyond it.
struct MeteredReader<'a, R> {
    inner: R,
    meter: &'a StreamMeter,
    limit: u64,
}

impl<R: Read> Read for MeteredReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.meter.limit_hit.get() {
            return Err(limit_error());
        }
        let allowed = self.meter.remaining(self.limit).saturating_add(1);
        let window = usize::try_from(allowed).map_or(buf.len(), |allowed| allowed.min(buf.len()));
        let read = match self.inner.read(&mut buf[..window]) {
            Ok(read) => read,
            Err(error) => {
                if error.kind() != io::ErrorKind::Interrupted {
                    self.meter.gzip_failure.set(Some(error.kind()));
                }
                return Err(error);
            }
        };
        let total = self.meter.decompressed.get().saturating_add(read as u64);
        self.meter.decompressed.set(total);
        if total > self.limit {
            self.meter.limit_hit.set(true);
            return Err(limit_error());
        }
        Ok(read)
    }
}

fn limit_error() -> io::Error {
    io::Error::other("decompressed size limit exceeded")
}

/// Where the walk is, for error messages.
#[derive(Default)]
struct Progress {
    /// Raw path of the entry being read, while inside one.
    in_entry: Option<String>,
    /// Raw path of the last entry fully read.
    last_entry: Option<String>,
    /// Whether any tar header has been read successfully.
    saw_header: bool,
}

/// Why the walk stopped: an I/O error that still needs classifying, or a decided rejection.
enum Failure {
    Io(io::Error),
    Rejected(ArchiveError),
}

impl From<ArchiveError> for Failure {
    fn from(error: ArchiveError) -> Self {
        Failure::Rejected(error)
    }
}

impl Failure {
    fn into_error(
        self,
        meter: &StreamMeter,
        limits: &ArchiveLimits,
        progress: &Progress,
    ) -> ArchiveError {
        let error = match self {
            Failure::Rejected(error) => return error,
            Failure::Io(error) => error,
        };
        if meter.limit_hit.get() {
            return ArchiveError::UncompressedTooLarge {
                path: progress
                    .in_entry
                    .clone()
                    .or_else(|| progress.last_entry.clone()),
                limit: limits.max_uncompressed,
            };
        }
        let reason = error.to_string();
        if meter.gzip_failure.get().is_some() {
            if meter.decompressed.get() == 0 {
                return ArchiveError::NotGzip { reason };
            }
            return ArchiveError::CorruptGzip {
                after: progress.last_entry.clone(),
                reason,
            };
        }
        if !progress.saw_header {
            return ArchiveError::NotTar { reason };
        }
        ArchiveError::CorruptTar {
            after: progress.last_entry.clone(),
            reason,
        }
    }
}

/// Upper bound on one GNU long-name, long-link or PAX record. Real ones hold a path and a few
/// timestamps (hundreds of bytes); the bound keeps a hostile record from being buffered whole.
const MAX_EXTENSION_RECORD: u64 = 64 * 1024;

/// Extension records (GNU `L`/`K`, PAX `x`) waiting for the entry they describe.
///
/// The tar crate is used in raw mode and these are applied here rather than by the crate, so
/// their size is bounded before they are buffered, and ambiguous combinations that different tar
/// implementations resolve differently are rejected instead of guessed at.
#[derive(Default)]
struct PendingExtensions {
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax: Option<Vec<u8>>,
}

impl PendingExtensions {
    fn is_empty(&self) -> bool {
        self.long_name.is_none() && self.long_link.is_none() && self.pax.is_none()
    }
}

fn walk_entries<R: Read>(
    tar_reader: &mut tar::Archive<R>,
    meter: &StreamMeter,
    limits: &ArchiveLimits,
    collector: &mut Collector,
    progress: &mut Progress,
) -> Result<(), Failure> {
    let mut entries_seen = 0usize;
    let mut pending = PendingExtensions::default();
    for entry in tar_reader.entries().map_err(Failure::Io)?.raw(true) {
        let mut entry = entry.map_err(Failure::Io)?;
        progress.saw_header = true;
        let entry_type = entry.header().entry_type();
        let header_path = String::from_utf8_lossy(&entry.header().path_bytes()).into_owned();

        let extension_slot = match entry_type {
            EntryType::GNULongName => Some((&mut pending.long_name, "GNU long name")),
            EntryType::GNULongLink => Some((&mut pending.long_link, "GNU long link")),
            EntryType::XHeader => Some((&mut pending.pax, "PAX")),
            _ => None,
        };
        if let Some((slot, kind)) = extension_slot {
            progress.in_entry = Some(header_path.clone());
            if slot.is_some() {
                return Err(ArchiveError::InvalidHeader {
                    path: header_path,
                    reason: format!("two {kind} records describe the same entry"),
                }
                .into());
            }
            *slot = Some(read_extension_record(&mut entry, &header_path, kind)?);
            progress.in_entry = None;
            continue;
        }

        let extensions = std::mem::take(&mut pending);
        let path_bytes = entry_path_bytes(&entry, &extensions, &header_path)?;
        let raw_path = String::from_utf8_lossy(&path_bytes).into_owned();
        progress.in_entry = Some(raw_path.clone());

        entries_seen += 1;
        if entries_seen > limits.max_entries {
            return Err(ArchiveError::TooManyEntries {
                path: raw_path,
                limit: limits.max_entries,
            }
            .into());
        }
        check_pax_size(&entry, &extensions, &raw_path)?;

        let is_directory = match entry_type {
            EntryType::Regular => false,
            EntryType::Directory => true,
            // Global PAX records only carry archive-wide metadata (git archive writes a commit
            // id) and are not applied to paths here, so skipping them is safe; their data is
            // skipped through the size meter like any other.
            EntryType::XGlobalHeader if extensions.is_empty() => {
                progress.last_entry = progress.in_entry.take();
                continue;
            }
            EntryType::XGlobalHeader => {
                return Err(ArchiveError::InvalidHeader {
                    path: raw_path,
                    reason: "a PAX global header sits between an extension record and its entry"
                        .to_owned(),
                }
                .into());
            }
            other => return Err(reject_entry_type(other, &entry, &extensions, raw_path).into()),
        };

        let path = checked_path(&path_bytes, &raw_path, limits)?;
        if path.is_empty() {
            // `./` or `.`: the archive's own root directory.
            if is_directory {
                progress.last_entry = progress.in_entry.take();
                continue;
            }
            return Err(ArchiveError::InvalidPath {
                path: raw_path,
                reason: "a file entry must have a name",
            }
            .into());
        }

        if is_directory {
            collector.add_directory(path)?;
        } else {
            if raw_path.ends_with('/') {
                return Err(ArchiveError::InvalidPath {
                    path: raw_path,
                    reason: "a file name cannot end with `/`",
                }
                .into());
            }
            let mode = entry
                .header()
                .mode()
                .map_err(|error| ArchiveError::InvalidHeader {
                    path: raw_path.clone(),
                    reason: error.to_string(),
                })?;
            let declared = entry.size();
            let remaining = meter.remaining(limits.max_uncompressed);
            if declared > remaining {
                return Err(ArchiveError::EntryTooLarge {
                    path: raw_path,
                    size: declared,
                    remaining,
                    limit: limits.max_uncompressed,
                }
                .into());
            }
            collector.reserve_file(&path)?;
            let contents = read_exactly(&mut entry, declared, &raw_path)?;
            collector.files.push(ArchiveFile {
                path,
                contents,
                mode: mode & 0o777,
            });
        }
        progress.last_entry = progress.in_entry.take();
    }
    if !pending.is_empty() {
        return Err(ArchiveError::CorruptTar {
            after: progress.last_entry.clone(),
            reason: "the archive ends with an extension record that describes no entry".to_owned(),
        }
        .into());
    }
    Ok(())
}

/// Reads an entry's data, which the caller has already checked against the size budget: the
/// allocation is bounded by the limits, never by the header alone.
fn read_exactly<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    declared: u64,
    path: &str,
) -> Result<Vec<u8>, Failure> {
    let capacity = usize::try_from(declared).map_err(|_| ArchiveError::InvalidHeader {
        path: path.to_owned(),
        reason: format!("size {declared} does not fit in memory"),
    })?;
    let mut contents = Vec::with_capacity(capacity);
    entry
        .take(declared)
        .read_to_end(&mut contents)
        .map_err(Failure::Io)?;
    if (contents.len() as u64) < declared {
        return Err(ArchiveError::Truncated {
            path: path.to_owned(),
            declared,
            actual: contents.len() as u64,
        }
        .into());
    }
    Ok(contents)
}

fn read_extension_record<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    header_path: &str,
    kind: &str,
) -> Result<Vec<u8>, Failure> {
    let size = entry.size();
    if size > MAX_EXTENSION_RECORD {
        return Err(ArchiveError::InvalidHeader {
            path: header_path.to_owned(),
            reason: format!(
                "{kind} record of {size} bytes is larger than the {MAX_EXTENSION_RECORD}-byte limit"
            ),
        }
        .into());
    }
    read_exactly(entry, size, header_path)
}

/// Looks a key up in PAX records; later records override earlier ones, as POSIX specifies.
fn pax_value<'a>(
    records: Option<&'a [u8]>,
    key: &str,
    path: &str,
) -> Result<Option<&'a [u8]>, ArchiveError> {
    let Some(records) = records else {
        return Ok(None);
    };
    let mut value = None;
    for record in tar::PaxExtensions::new(records) {
        let record = record.map_err(|error| ArchiveError::InvalidHeader {
            path: path.to_owned(),
            reason: format!("malformed PAX record: {error}"),
        })?;
        if record.key_bytes() == key.as_bytes() {
            value = Some(record.value_bytes());
        }
    }
    Ok(value)
}

/// The entry's full path: a GNU long name or PAX `path` record if one precedes it, otherwise the
/// header's (ustar prefix + name) field.
fn entry_path_bytes<R: Read>(
    entry: &tar::Entry<'_, R>,
    extensions: &PendingExtensions,
    header_path: &str,
) -> Result<Vec<u8>, ArchiveError> {
    let pax_path = pax_value(extensions.pax.as_deref(), "path", header_path)?;
    match (&extensions.long_name, pax_path) {
        (Some(_), Some(_)) => Err(ArchiveError::InvalidHeader {
            path: header_path.to_owned(),
            // Tar implementations disagree on which wins, so either answer could be wrong.
            reason: "both a GNU long name and a PAX path are given".to_owned(),
        }),
        (Some(long_name), None) => Ok(trim_trailing_nuls(long_name).to_vec()),
        (None, Some(pax_path)) => Ok(pax_path.to_vec()),
        (None, None) => Ok(entry.header().path_bytes().into_owned()),
    }
}

fn trim_trailing_nuls(bytes: &[u8]) -> &[u8] {
    let end = bytes
        .iter()
        .rposition(|byte| *byte != 0)
        .map_or(0, |last| last + 1);
    &bytes[..end]
}

/// A PAX `size` must agree with the header: the raw tar reader positions entries by the header's
/// size, and letting the two differ is a known way to make parsers see different files.
fn check_pax_size<R: Read>(
    entry: &tar::Entry<'_, R>,
    extensions: &PendingExtensions,
    path: &str,
) -> Result<(), ArchiveError> {
    let Some(pax_size) = pax_value(extensions.pax.as_deref(), "size", path)? else {
        return Ok(());
    };
    let agrees = std::str::from_utf8(pax_size)
        .ok()
        .and_then(|text| text.parse::<u64>().ok())
        .is_some_and(|size| size == entry.size());
    if agrees {
        Ok(())
    } else {
        Err(ArchiveError::InvalidHeader {
            path: path.to_owned(),
            reason: format!(
                "PAX size {:?} disagrees with the header size {}",
                String::from_utf8_lossy(pax_size),
                entry.size()
            ),
        })
    }
}

fn reject_entry_type<R: Read>(
    entry_type: EntryType,
    entry: &tar::Entry<'_, R>,
    extensions: &PendingExtensions,
    path: String,
) -> ArchiveError {
    let target = || {
        let pax_target = pax_value(extensions.pax.as_deref(), "linkpath", &path)
            .ok()
            .flatten();
        let target = match (&extensions.long_link, pax_target) {
            (Some(long_link), _) => trim_trailing_nuls(long_link).to_vec(),
            (None, Some(pax_target)) => pax_target.to_vec(),
            (None, None) => entry
                .header()
                .link_name_bytes()
                .map(|target| target.into_owned())
                .unwrap_or_default(),
        };
        String::from_utf8_lossy(&target).into_owned()
    };
    match entry_type {
        EntryType::Symlink => ArchiveError::SymbolicLink {
            target: target(),
            path,
        },
        EntryType::Link => ArchiveError::HardLink {
            target: target(),
            path,
        },
        EntryType::Char | EntryType::Block => ArchiveError::DeviceFile { path },
        EntryType::Fifo => ArchiveError::UnsupportedEntryType {
            path,
            entry_type: "FIFO".to_owned(),
        },
        EntryType::GNUSparse => ArchiveError::UnsupportedEntryType {
            path,
            entry_type: "GNU sparse file".to_owned(),
        },
        other => ArchiveError::UnsupportedEntryType {
            path,
            entry_type: format!("{:?} (type byte {:?})", other, char::from(other.as_byte())),
        },
    }
}

/// Decodes and normalizes an entry path and checks it against the path limits.
fn checked_path(
    bytes: &[u8],
    raw_path: &str,
    limits: &ArchiveLimits,
) -> Result<String, ArchiveError> {
    let text = std::str::from_utf8(bytes).map_err(|_| ArchiveError::PathNotUtf8 {
        path: raw_path.to_owned(),
    })?;
    let path = normalize_path(text).map_err(|problem| problem.into_error(raw_path))?;
    if path.len() > limits.max_path_len {
        return Err(ArchiveError::PathTooLong {
            path: raw_path.to_owned(),
            len: path.len(),
            limit: limits.max_path_len,
        });
    }
    let depth = if path.is_empty() {
        0
    } else {
        path.split('/').count()
    };
    if depth > limits.max_depth {
        return Err(ArchiveError::PathTooDeep {
            path: raw_path.to_owned(),
            depth,
            limit: limits.max_depth,
        });
    }
    Ok(path)
}

/// What makes a path unsafe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PathProblem {
    Absolute,
    ParentDir,
    Invalid(&'static str),
}

impl std::fmt::Display for PathProblem {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PathProblem::Absolute => formatter.write_str("it is absolute"),
            PathProblem::ParentDir => formatter.write_str("it has a `..` component"),
            PathProblem::Invalid(reason) => formatter.write_str(reason),
        }
    }
}

impl PathProblem {
    fn into_error(self, path: &str) -> ArchiveError {
        let path = path.to_owned();
        match self {
            PathProblem::Absolute => ArchiveError::AbsolutePath { path },
            PathProblem::ParentDir => ArchiveError::ParentDirComponent { path },
            PathProblem::Invalid(reason) => ArchiveError::InvalidPath { path, reason },
        }
    }
}

/// Turns `./a//b/./c/` into `a/b/c`; the root (`.`, `./`) becomes the empty string.
///
/// `..` is rejected rather than resolved: a chart never needs it, and resolving it would let two
/// different-looking names alias one file.
fn normalize_path(raw: &str) -> Result<String, PathProblem> {
    if raw.starts_with('/') {
        return Err(PathProblem::Absolute);
    }
    if raw.contains('\0') {
        return Err(PathProblem::Invalid("it contains a NUL byte"));
    }
    // A backslash is a separator for Windows tools; refusing it keeps every consumer agreeing on
    // where components start.
    if raw.contains('\\') {
        return Err(PathProblem::Invalid("it contains a backslash"));
    }
    let mut components = Vec::new();
    for component in raw.split('/') {
        match component {
            "" | "." => {}
            ".." => return Err(PathProblem::ParentDir),
            name => components.push(name),
        }
    }
    Ok(components.join("/"))
}

/// Accumulates files and tracks which paths are taken, so duplicates and file/directory
/// collisions are caught as entries arrive.
struct Collector {
    files: Vec<ArchiveFile>,
    file_paths: HashSet<String>,
    /// Directories listed as entries.
    explicit_dirs: HashSet<String>,
    /// Every directory that exists, listed or implied by a deeper path.
    all_dirs: HashSet<String>,
}

impl Collector {
    fn new(limits: &ArchiveLimits) -> Self {
        // Entry counts are small in practice; cap the pre-allocation so a large limit does not
        // reserve memory up front.
        let expected = limits.max_entries.min(256);
        Self {
            files: Vec::with_capacity(expected),
            file_paths: HashSet::with_capacity(expected),
            explicit_dirs: HashSet::new(),
            all_dirs: HashSet::new(),
        }
    }

    fn add_directory(&mut self, path: String) -> Result<(), ArchiveError> {
        if self.file_paths.contains(&path) {
            return Err(ArchiveError::PathConflict {
                other: path.clone(),
                path,
            });
        }
        if self.explicit_dirs.contains(&path) {
            return Err(ArchiveError::DuplicatePath { path });
        }
        self.claim_ancestors(&path)?;
        self.all_dirs.insert(path.clone());
        self.explicit_dirs.insert(path);
        Ok(())
    }

    /// Claims `path` for a file about to be read.
    fn reserve_file(&mut self, path: &str) -> Result<(), ArchiveError> {
        if self.file_paths.contains(path) {
            return Err(ArchiveError::DuplicatePath {
                path: path.to_owned(),
            });
        }
        if self.all_dirs.contains(path) {
            return Err(ArchiveError::PathConflict {
                path: path.to_owned(),
                other: format!("{path}/"),
            });
        }
        self.claim_ancestors(path)?;
        self.file_paths.insert(path.to_owned());
        Ok(())
    }

    /// Records every parent directory of `path`, failing if one of them is a file.
    fn claim_ancestors(&mut self, path: &str) -> Result<(), ArchiveError> {
        for (separator, _) in path.match_indices('/') {
            let ancestor = &path[..separator];
            if self.file_paths.contains(ancestor) {
                return Err(ArchiveError::PathConflict {
                    path: path.to_owned(),
                    other: ancestor.to_owned(),
                });
            }
            if !self.all_dirs.contains(ancestor) {
                self.all_dirs.insert(ancestor.to_owned());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
