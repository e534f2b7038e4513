//! Unit tests for the archive reader: archives are built in memory, including hostile ones that
//! `tar::Builder`'s own path checks would refuse to write (so headers are filled in by hand).
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.

use std::io::Write;

use flate2::write::GzEncoder;
use flate2::{Compress, Compression, Crc, FlushCompress, Status};
use proptest::prelude::*;
use tar::{EntryType, Header};

use super::*;

// ---------------------------------------------------------------------------------------------
// Archive builders
// ---------------------------------------------------------------------------------------------

/// One entry to put in a test archive. Paths are written verbatim into the header.
enum Item<'a> {
    File(&'a str, &'a [u8]),
    FileWithMode(&'a str, &'a [u8], u32),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    HardLink(&'a str, &'a str),
    Special(&'a str, EntryType),
    /// A file whose path is carried by a PAX `path` record (the header holds a stub name).
    PaxFile(&'a str, &'a [u8]),
    /// A PAX global header, as `git archive` writes.
    PaxGlobal(&'a [u8]),
    /// A file whose name goes through the tar crate's GNU long-name support.
    GnuLongFile(&'a str, &'a [u8]),
    /// A file whose name is split across the ustar `prefix` and `name` fields.
    UstarLongFile(&'a str, &'a [u8]),
}

/// A header with `path` written byte-for-byte into the 100-byte name field, bypassing the
/// validation that `Header::set_path` does.
fn raw_header(path: &[u8], entry_type: EntryType, size: u64, mode: u32) -> Header {
    assert!(path.len() <= 100, "raw header names are at most 100 bytes");
    let mut header = Header::new_ustar();
    header.as_old_mut().name[..path.len()].copy_from_slice(path);
    header.set_entry_type(entry_type);
    header.set_size(size);
    header.set_mode(mode);
    header.set_mtime(1_700_000_000);
    header.set_cksum();
    header
}

fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    // A record is "<len> <key>=<value>\n" where <len> counts the whole record, itself included.
    let body_len = 1 + key.len() + 1 + value.len() + 1;
    let mut total = body_len + 1;
    while total != body_len + total.to_string().len() {
        total = body_len + total.to_string().len();
    }
    let mut record = format!("{total} {key}=").into_bytes();
    record.extend_from_slice(value);
    record.push(b'\n');
    record
}

fn tar_bytes(items: &[Item<'_>]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for item in items {
        match *item {
            Item::File(path, data) => {
                let header = raw_header(
                    path.as_bytes(),
                    EntryType::Regular,
                    data.len() as u64,
                    0o644,
                );
                builder.append(&header, data).unwrap();
            }
            Item::FileWithMode(path, data, mode) => {
                let header =
                    raw_header(path.as_bytes(), EntryType::Regular, data.len() as u64, mode);
                builder.append(&header, data).unwrap();
            }
            Item::Dir(path) => {
                let header = raw_header(path.as_bytes(), EntryType::Directory, 0, 0o755);
                builder.append(&header, io::empty()).unwrap();
            }
            Item::Symlink(path, target) | Item::HardLink(path, target) => {
                let kind = if matches!(item, Item::Symlink(..)) {
                    EntryType::Symlink
                } else {
                    EntryType::Link
                };
                let mut header = raw_header(path.as_bytes(), kind, 0, 0o777);
                header.set_link_name_literal(target).unwrap();
                header.set_cksum();
                builder.append(&header, io::empty()).unwrap();
            }
            Item::Special(path, kind) => {
                let header = raw_header(path.as_bytes(), kind, 0, 0o644);
                builder.append(&header, io::empty()).unwrap();
            }
            Item::PaxFile(path, data) => {
                let records = pax_record("path", path.as_bytes());
                let pax = raw_header(
                    b"PaxHeaders/stub",
                    EntryType::XHeader,
                    records.len() as u64,
                    0o644,
                );
                builder.append(&pax, records.as_slice()).unwrap();
                let header = raw_header(b"stub", EntryType::Regular, data.len() as u64, 0o644);
                builder.append(&header, data).unwrap();
            }
            Item::PaxGlobal(comment) => {
                let records = pax_record("comment", comment);
                let header = raw_header(
                    b"pax_global_header",
                    EntryType::XGlobalHeader,
                    records.len() as u64,
                    0o644,
                );
                builder.append(&header, records.as_slice()).unwrap();
            }
            Item::GnuLongFile(path, data) => {
                let mut header = Header::new_gnu();
                header.set_size(data.len() as u64);
                header.set_mode(0o644);
                header.set_entry_type(EntryType::Regular);
                builder.append_data(&mut header, path, data).unwrap();
            }
            Item::UstarLongFile(path, data) => {
                let mut header = Header::new_ustar();
                header.set_path(path).unwrap();
                header.set_size(data.len() as u64);
                header.set_mode(0o644);
                header.set_entry_type(EntryType::Regular);
                header.set_cksum();
                builder.append(&header, data).unwrap();
            }
        }
    }
    builder.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn tgz(items: &[Item<'_>]) -> Vec<u8> {
    gzip(&tar_bytes(items))
}

fn read(items: &[Item<'_>]) -> Result<Archive, ArchiveError> {
    read_tar_gz(&tgz(items), &ArchiveLimits::default())
}

fn paths(archive: &Archive) -> Vec<&str> {
    archive
        .files
        .iter()
        .map(|file| file.path.as_str())
        .collect()
}

/// Runs `compress` over all of `input` with the given flush, returning what it wrote.
fn deflate(compress: &mut Compress, mut input: &[u8], flush: FlushCompress) -> Vec<u8> {
    let mut output = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let (in_before, out_before) = (compress.total_in(), compress.total_out());
        let status = compress.compress(input, &mut buffer, flush).unwrap();
        let consumed = (compress.total_in() - in_before) as usize;
        let produced = (compress.total_out() - out_before) as usize;
        input = &input[consumed..];
        output.extend_from_slice(&buffer[..produced]);
        let flushed = input.is_empty() && produced < buffer.len();
        if status == Status::StreamEnd || (flush != FlushCompress::Finish && flushed) {
            return output;
        }
    }
}

/// A valid single-member gzip of `prefix` followed by `zero_count` zero bytes, built without ever
/// holding the zeros: each 1 MiB of zeros is deflated after a full flush (which resets the
/// compressor's window), so every such chunk compresses to the same bytes and is repeated. About
/// 1 KiB of output per MiB of zeros.
fn gzip_with_zero_tail(prefix: &[u8], zero_count: u64) -> Vec<u8> {
    const CHUNK: usize = 1 << 20;
    let zero_chunk = vec![0u8; CHUNK];
    let mut compress = Compress::new(Compression::best(), false);
    let mut crc = Crc::new();
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 0xff];

    out.extend(deflate(&mut compress, prefix, FlushCompress::Full));
    crc.update(prefix);

    let mut chunk_crc = Crc::new();
    chunk_crc.update(&zero_chunk);
    let full_chunks = zero_count / CHUNK as u64;
    let mut previous: Option<Vec<u8>> = None;
    let mut written = 0u64;
    while written < full_chunks {
        let compressed = deflate(&mut compress, &zero_chunk, FlushCompress::Full);
        crc.combine(&chunk_crc);
        out.extend_from_slice(&compressed);
        written += 1;
        if previous.as_deref() == Some(compressed.as_slice()) {
            // The compressor has reached a steady state: the rest is this chunk repeated.
            for _ in written..full_chunks {
                out.extend_from_slice(&compressed);
                crc.combine(&chunk_crc);
            }
            written = full_chunks;
        }
        previous = Some(compressed);
    }
    let tail = &zero_chunk[..(zero_count % CHUNK as u64) as usize];
    out.extend(deflate(&mut compress, tail, FlushCompress::Finish));
    crc.update(tail);

    out.extend_from_slice(&crc.sum().to_le_bytes());
    // ISIZE is the length modulo 2^32 (RFC 1952).
    let total = prefix.len() as u64 + zero_count;
    out.extend_from_slice(&(total as u32).to_le_bytes());
    out
}

const GIB: u64 = 1 << 30;

fn chart_items<'a>(chart_yaml: &'a [u8]) -> Vec<Item<'a>> {
    vec![
        Item::Dir("collectd/"),
        Item::File("collectd/Chart.yaml", chart_yaml),
        Item::Dir("collectd/templates/"),
        Item::File("collectd/templates/daemonset.yaml", b"kind: DaemonSet\n"),
        Item::File("collectd/values.yaml", b"replicas: 1\n"),
    ]
}

const CHART_YAML: &[u8] =
    b"apiVersion: v1\nname: collectd\nversion: 0.2.0\nappVersion: \"7.1.0\"\n";
const MANIFEST: &[u8] = b"---\nversion: v1\ntype:\n  values: \"override_values.yaml\"\n";

// ---------------------------------------------------------------------------------------------
// Accepted layouts
// ---------------------------------------------------------------------------------------------

#[test]
fn reads_files_in_archive_order_with_contents_and_mode() {
    let archive = read(&[
        Item::Dir("chart/"),
        Item::File("chart/Chart.yaml", b"name: chart\n"),
        Item::FileWithMode("chart/run.sh", b"#!/bin/sh\n", 0o755),
    ])
    .unwrap();
    assert_eq!(paths(&archive), ["chart/Chart.yaml", "chart/run.sh"]);
    assert_eq!(archive.files[0].contents, b"name: chart\n");
    assert_eq!(archive.files[0].mode, 0o644);
    assert_eq!(archive.files[1].mode, 0o755);
    assert_eq!(archive.total_size(), 22);
    assert_eq!(
        archive.get("chart/run.sh").unwrap().contents,
        b"#!/bin/sh\n"
    );
    assert!(archive.get("chart").is_none());
}

#[test]
fn strips_dot_slash_prefixes_like_tar_czf_dot() {
    let archive = read(&[
        Item::Dir("./"),
        Item::Dir("./chart/"),
        Item::File("./chart/Chart.yaml", b"x"),
        Item::File("chart/./templates//a.yaml", b"y"),
    ])
    .unwrap();
    assert_eq!(
        paths(&archive),
        ["chart/Chart.yaml", "chart/templates/a.yaml"]
    );
}

#[test]
fn accepts_root_directory_written_as_dot() {
    let archive = read(&[Item::Dir("."), Item::File("manifest.yaml", b"v")]).unwrap();
    assert_eq!(paths(&archive), ["manifest.yaml"]);
}

#[test]
fn accepts_files_without_directory_entries() {
    let archive = read(&[Item::File("a/b/c.yaml", b"1"), Item::File("a/d.yaml", b"2")]).unwrap();
    assert_eq!(paths(&archive), ["a/b/c.yaml", "a/d.yaml"]);
}

#[test]
fn accepts_gnu_long_names() {
    let long = format!("chart/templates/{}.yaml", "n".repeat(180));
    let archive = read(&[Item::GnuLongFile(&long, b"long")]).unwrap();
    assert_eq!(paths(&archive), [long.as_str()]);
    assert_eq!(archive.files[0].contents, b"long");
}

#[test]
fn accepts_ustar_prefix_long_names() {
    let long = format!("chart/{}/values.yaml", "d".repeat(120));
    let archive = read(&[Item::UstarLongFile(&long, b"v")]).unwrap();
    assert_eq!(paths(&archive), [long.as_str()]);
}

#[test]
fn accepts_pax_path_records_and_skips_pax_global_headers() {
    let long = format!("./chart/crds/{}.yaml", "p".repeat(150));
    let archive = read(&[
        Item::PaxGlobal(b"4b825dc642cb6eb9a060e54bf8d69288fbee4904"),
        Item::PaxFile(&long, b"crd"),
    ])
    .unwrap();
    assert_eq!(paths(&archive), [&long[2..]]);
    assert_eq!(archive.files[0].contents, b"crd");
}

#[test]
fn rejects_ambiguous_or_dangling_extension_records() {
    fn with_extensions(
        records: &[(EntryType, &[u8])],
        then_file: bool,
    ) -> Result<Archive, ArchiveError> {
        let mut builder = tar::Builder::new(Vec::new());
        for (kind, data) in records {
            let header = raw_header(b"ext", *kind, data.len() as u64, 0o644);
            builder.append(&header, *data).unwrap();
        }
        if then_file {
            builder
                .append(
                    &raw_header(b"stub", EntryType::Regular, 1, 0o644),
                    &b"x"[..],
                )
                .unwrap();
        }
        read_tar_gz(
            &gzip(&builder.into_inner().unwrap()),
            &ArchiveLimits::default(),
        )
    }
    let pax_path = pax_record("path", b"a/from-pax");
    let size_record = pax_record("size", b"999");
    let cases: [&[(EntryType, &[u8])]; 4] = [
        // GNU and PAX both name the file: tar implementations disagree on which wins.
        &[
            (EntryType::GNULongName, b"a/from-gnu\0"),
            (EntryType::XHeader, &pax_path),
        ],
        // Two long names for one file.
        &[
            (EntryType::GNULongName, b"a\0"),
            (EntryType::GNULongName, b"b\0"),
        ],
        // A PAX size that disagrees with the header would make parsers split entries differently.
        &[(EntryType::XHeader, &size_record)],
        // Malformed PAX records.
        &[(EntryType::XHeader, b"99 path=short\n")],
    ];
    for records in cases {
        let error = with_extensions(records, true).unwrap_err();
        assert!(
            matches!(error, ArchiveError::InvalidHeader { .. }),
            "{error:?}"
        );
    }
    let error = with_extensions(&[(EntryType::GNULongName, b"orphan\0")], false).unwrap_err();
    assert!(
        matches!(error, ArchiveError::CorruptTar { .. }),
        "{error:?}"
    );
    // A matching PAX size is fine.
    let archive =
        with_extensions(&[(EntryType::XHeader, &pax_record("size", b"1"))], true).unwrap();
    assert_eq!(paths(&archive), ["stub"]);
}

#[test]
fn link_targets_from_long_link_records_are_reported() {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = Header::new_gnu();
    header.set_entry_type(EntryType::Symlink);
    header.set_size(0);
    let target = format!("/{}", "t".repeat(150));
    builder
        .append_link(&mut header, "chart/link", &target)
        .unwrap();
    let bytes = gzip(&builder.into_inner().unwrap());
    let error = read_tar_gz(&bytes, &ArchiveLimits::default()).unwrap_err();
    assert_eq!(
        error,
        ArchiveError::SymbolicLink {
            path: "chart/link".into(),
            target
        }
    );
}

#[test]
fn drops_setuid_setgid_and_sticky_bits() {
    let archive = read(&[Item::FileWithMode("a", b"", 0o7755)]).unwrap();
    assert_eq!(archive.files[0].mode, 0o755);
}

#[test]
fn accepts_empty_files() {
    let archive = read(&[Item::File("empty", b"")]).unwrap();
    assert_eq!(archive.files[0].contents, b"");
}

#[test]
fn accepts_multi_member_gzip_like_go_does() {
    let tar = tar_bytes(&[Item::File("a", b"first"), Item::File("b", b"second")]);
    let (head, tail) = tar.split_at(512 + 512);
    let mut bytes = gzip(head);
    bytes.extend(gzip(tail));
    let archive = read_tar_gz(&bytes, &ArchiveLimits::default()).unwrap();
    assert_eq!(paths(&archive), ["a", "b"]);
}

#[test]
fn accepts_archive_without_end_of_archive_marker() {
    let mut tar = tar_bytes(&[Item::File("a", b"data")]);
    tar.truncate(1024); // header + one data block, no trailing zero blocks
    let archive = read_tar_gz(&gzip(&tar), &ArchiveLimits::default()).unwrap();
    assert_eq!(archive.files[0].contents, b"data");
}

// ---------------------------------------------------------------------------------------------
// Rejected containers
// ---------------------------------------------------------------------------------------------

#[test]
fn rejects_data_that_is_not_gzip() {
    let plain_tar = tar_bytes(&[Item::File("a", b"x")]);
    for bytes in [&plain_tar[..], b"", b"\x1f", b"PK\x03\x04zip"] {
        let error = read_tar_gz(bytes, &ArchiveLimits::default()).unwrap_err();
        assert!(matches!(error, ArchiveError::NotGzip { .. }), "{error:?}");
    }
}

#[test]
fn rejects_gzip_magic_with_a_broken_header() {
    let error = read_tar_gz(b"\x1f\x8b\x09\x00garbage", &ArchiveLimits::default()).unwrap_err();
    assert!(matches!(error, ArchiveError::NotGzip { .. }), "{error:?}");
}

#[test]
fn rejects_gzip_that_does_not_hold_tar() {
    let error = read_tar_gz(&gzip(&[b'x'; 2048]), &ArchiveLimits::default()).unwrap_err();
    assert!(matches!(error, ArchiveError::NotTar { .. }), "{error:?}");
}

#[test]
fn rejects_gzip_with_bad_crc() {
    let mut bytes = tgz(&[Item::File("a", b"payload")]);
    let crc_at = bytes.len() - 8;
    bytes[crc_at] ^= 0xff;
    let error = read_tar_gz(&bytes, &ArchiveLimits::default()).unwrap_err();
    assert!(
        matches!(&error, ArchiveError::CorruptGzip { after: Some(path), .. } if path == "a"),
        "{error:?}"
    );
}

#[test]
fn rejects_truncated_gzip() {
    let bytes = tgz(&[Item::File("a", &[7u8; 4096]), Item::File("b", &[9u8; 4096])]);
    let error = read_tar_gz(&bytes[..bytes.len() - 12], &ArchiveLimits::default()).unwrap_err();
    assert!(
        matches!(error, ArchiveError::CorruptGzip { .. }),
        "{error:?}"
    );
}

#[test]
fn rejects_uploads_over_the_compressed_limit() {
    let bytes = tgz(&[Item::File("a", b"x")]);
    let limits = ArchiveLimits {
        max_compressed: bytes.len() - 1,
        ..ArchiveLimits::default()
    };
    let error = read_tar_gz(&bytes, &limits).unwrap_err();
    assert_eq!(
        error,
        ArchiveError::CompressedTooLarge {
            size: bytes.len(),
            limit: bytes.len() - 1
        }
    );
    assert!(error.is_limit_exceeded());
    assert!(!ArchiveError::EmptyArchive.is_limit_exceeded());
}

#[test]
fn rejects_empty_archives() {
    for items in [&[][..], &[Item::Dir("./"), Item::Dir("chart/")][..]] {
        assert_eq!(read(items).unwrap_err(), ArchiveError::EmptyArchive);
    }
    assert_eq!(
        read_tar_gz(&gzip(b""), &ArchiveLimits::default()).unwrap_err(),
        ArchiveError::EmptyArchive
    );
}

#[test]
fn rejects_corrupt_header_after_good_entries() {
    let mut tar = tar_bytes(&[Item::File("a", b"x"), Item::File("b", b"y")]);
    tar[1024 + 148] ^= 0x01; // break the second header's checksum field
    let error = read_tar_gz(&gzip(&tar), &ArchiveLimits::default()).unwrap_err();
    assert!(
        matches!(&error, ArchiveError::CorruptTar { after: Some(path), .. } if path == "a"),
        "{error:?}"
    );
}

#[test]
fn rejects_entry_truncated_inside_its_data() {
    let tar = tar_bytes(&[Item::File("big", &[1u8; 2000])]);
    let error = read_tar_gz(&gzip(&tar[..512 + 1000]), &ArchiveLimits::default()).unwrap_err();
    assert_eq!(
        error,
        ArchiveError::Truncated {
            path: "big".into(),
            declared: 2000,
            actual: 1000
        }
    );
}

// ---------------------------------------------------------------------------------------------
// Rejected entries
// ---------------------------------------------------------------------------------------------

#[test]
fn rejects_absolute_paths() {
    for path in ["/etc/passwd", "//chart/Chart.yaml"] {
        let error = read(&[Item::File(path, b"x")]).unwrap_err();
        assert_eq!(error, ArchiveError::AbsolutePath { path: path.into() });
    }
    let error = read(&[Item::Dir("/tmp/")]).unwrap_err();
    assert!(matches!(error, ArchiveError::AbsolutePath { .. }));
}

#[test]
fn rejects_parent_directory_components() {
    for path in ["../evil", "chart/../../evil", "chart/..", "./../x"] {
        let error = read(&[Item::File(path, b"x")]).unwrap_err();
        assert_eq!(
            error,
            ArchiveError::ParentDirComponent { path: path.into() }
        );
    }
    let long = format!("chart/{}/../../../etc/cron.d/x", "a".repeat(150));
    let error = read(&[Item::PaxFile(&long, b"x")]).unwrap_err();
    assert_eq!(error, ArchiveError::ParentDirComponent { path: long });
}

#[test]
fn rejects_symbolic_links() {
    let error = read(&[
        Item::Dir("chart/"),
        Item::Symlink("chart/values.yaml", "/etc/shadow"),
    ])
    .unwrap_err();
    assert_eq!(
        error,
        ArchiveError::SymbolicLink {
            path: "chart/values.yaml".into(),
            target: "/etc/shadow".into()
        }
    );
    // Even a harmless-looking relative link is refused.
    let error = read(&[Item::File("a", b"x"), Item::Symlink("b", "a")]).unwrap_err();
    assert!(matches!(error, ArchiveError::SymbolicLink { .. }));
}

#[test]
fn rejects_hard_links() {
    let error = read(&[Item::File("a", b"x"), Item::HardLink("b", "a")]).unwrap_err();
    assert_eq!(
        error,
        ArchiveError::HardLink {
            path: "b".into(),
            target: "a".into()
        }
    );
}

#[test]
fn rejects_device_files() {
    for kind in [EntryType::Char, EntryType::Block] {
        let error = read(&[Item::Special("chart/dev", kind)]).unwrap_err();
        assert_eq!(
            error,
            ArchiveError::DeviceFile {
                path: "chart/dev".into()
            }
        );
    }
}

#[test]
fn rejects_other_special_entries() {
    for kind in [EntryType::Fifo, EntryType::Continuous, EntryType::new(b'Z')] {
        let error = read(&[Item::Special("chart/odd", kind)]).unwrap_err();
        assert!(
            matches!(&error, ArchiveError::UnsupportedEntryType { path, .. } if path == "chart/odd"),
            "{error:?}"
        );
    }
}

#[test]
fn rejects_duplicate_paths_including_after_normalization() {
    let error = read(&[Item::File("a/b", b"1"), Item::File("./a//b", b"2")]).unwrap_err();
    assert_eq!(error, ArchiveError::DuplicatePath { path: "a/b".into() });
    let error = read(&[Item::Dir("a/"), Item::Dir("./a")]).unwrap_err();
    assert_eq!(error, ArchiveError::DuplicatePath { path: "a".into() });
}

#[test]
fn rejects_a_path_used_as_both_file_and_directory() {
    let error = read(&[Item::File("a", b"1"), Item::File("a/b", b"2")]).unwrap_err();
    assert_eq!(
        error,
        ArchiveError::PathConflict {
            path: "a/b".into(),
            other: "a".into()
        }
    );
    let error = read(&[Item::File("a/b", b"2"), Item::File("a", b"1")]).unwrap_err();
    assert!(
        matches!(error, ArchiveError::PathConflict { .. }),
        "{error:?}"
    );
    let error = read(&[Item::File("a", b"1"), Item::Dir("a/")]).unwrap_err();
    assert!(
        matches!(error, ArchiveError::PathConflict { .. }),
        "{error:?}"
    );
}

#[test]
fn rejects_invalid_paths() {
    let error = read(&[Item::File("chart\\..\\x", b"1")]).unwrap_err();
    assert!(
        matches!(error, ArchiveError::InvalidPath { .. }),
        "{error:?}"
    );
    let error = read(&[Item::File("./", b"1")]).unwrap_err();
    assert!(
        matches!(error, ArchiveError::InvalidPath { .. }),
        "{error:?}"
    );
    let error = read(&[Item::File("dir/", b"1")]).unwrap_err();
    assert!(
        matches!(error, ArchiveError::InvalidPath { .. }),
        "{error:?}"
    );
    let error = read(&[Item::PaxFile("a\0b", b"1")]).unwrap_err();
    assert!(
        matches!(error, ArchiveError::InvalidPath { .. }),
        "{error:?}"
    );
}

#[test]
fn rejects_non_utf8_paths() {
    let mut builder = tar::Builder::new(Vec::new());
    let header = raw_header(b"chart/\xff\xfe.yaml", EntryType::Regular, 1, 0o644);
    builder.append(&header, &b"x"[..]).unwrap();
    let bytes = gzip(&builder.into_inner().unwrap());
    let error = read_tar_gz(&bytes, &ArchiveLimits::default()).unwrap_err();
    assert!(
        matches!(error, ArchiveError::PathNotUtf8 { .. }),
        "{error:?}"
    );
}

#[test]
fn rejects_too_many_entries() {
    let limits = ArchiveLimits {
        max_entries: 3,
        ..ArchiveLimits::default()
    };
    let fits = [
        Item::Dir("c/"),
        Item::File("c/1", b""),
        Item::File("c/2", b""),
    ];
    assert!(read_tar_gz(&tgz(&fits), &limits).is_ok());
    let over = [
        Item::Dir("c/"),
        Item::File("c/1", b""),
        Item::File("c/2", b""),
        Item::File("c/3", b""),
    ];
    let error = read_tar_gz(&tgz(&over), &limits).unwrap_err();
    assert_eq!(
        error,
        ArchiveError::TooManyEntries {
            path: "c/3".into(),
            limit: 3
        }
    );
}

#[test]
fn rejects_paths_past_the_length_and_depth_limits() {
    let limits = ArchiveLimits {
        max_path_len: 10,
        max_depth: 3,
        ..ArchiveLimits::default()
    };
    // `./` prefixes do not count: the limit is on the normalized path.
    assert!(read_tar_gz(&tgz(&[Item::File("./a/b/123456", b"")]), &limits).is_ok());
    let error = read_tar_gz(&tgz(&[Item::File("a/b/1234567", b"")]), &limits).unwrap_err();
    assert_eq!(
        error,
        ArchiveError::PathTooLong {
            path: "a/b/1234567".into(),
            len: 11,
            limit: 10
        }
    );
    let error = read_tar_gz(&tgz(&[Item::File("a/b/c/d", b"")]), &limits).unwrap_err();
    assert_eq!(
        error,
        ArchiveError::PathTooDeep {
            path: "a/b/c/d".into(),
            depth: 4,
            limit: 3
        }
    );
}

#[test]
fn rejects_content_past_the_uncompressed_limit() {
    let limits = ArchiveLimits {
        max_uncompressed: 4096,
        ..ArchiveLimits::default()
    };
    let error = read_tar_gz(&tgz(&[Item::File("a", &[1u8; 5000])]), &limits).unwrap_err();
    assert!(
        matches!(&error, ArchiveError::EntryTooLarge { path, size: 5000, limit: 4096, .. } if path == "a"),
        "{error:?}"
    );
    // Several files that each fit but together do not.
    // The budget counts tar framing too: 512 + 1536 + 512 bytes are used when `b` is reached.
    let items = [Item::File("a", &[1u8; 1500]), Item::File("b", &[2u8; 1537])];
    let error = read_tar_gz(&tgz(&items), &limits).unwrap_err();
    assert!(
        matches!(&error, ArchiveError::EntryTooLarge { path, .. } if path == "b"),
        "{error:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Gzip bombs
// ---------------------------------------------------------------------------------------------

#[test]
fn zero_tail_builder_makes_a_valid_gzip() {
    use std::io::Read as _;
    let prefix = b"prefix bytes";
    let bytes = gzip_with_zero_tail(prefix, 3 * (1 << 20) + 17);
    let mut decoded = Vec::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_end(&mut decoded)
        .unwrap();
    assert_eq!(decoded.len(), prefix.len() + 3 * (1 << 20) + 17);
    assert_eq!(&decoded[..prefix.len()], prefix);
    assert!(decoded[prefix.len()..].iter().all(|byte| *byte == 0));
}

#[test]
fn gzip_bomb_declared_as_one_huge_file_is_refused_from_its_header() {
    let header = raw_header(b"chart/zeros", EntryType::Regular, GIB, 0o644);
    let bomb = gzip_with_zero_tail(header.as_bytes(), GIB);
    assert!(
        bomb.len() < 2 << 20,
        "1 GiB of zeros should compress to about 1 MiB, got {}",
        bomb.len()
    );

    let limits = ArchiveLimits::default();
    let (result, decompressed) = read_tar_gz_metered(&bomb, &limits);
    assert_eq!(
        result.unwrap_err(),
        ArchiveError::EntryTooLarge {
            path: "chart/zeros".into(),
            size: GIB,
            remaining: limits.max_uncompressed - decompressed,
            limit: limits.max_uncompressed
        }
    );
    // Only the header was inflated, not the gigabyte behind it.
    assert!(decompressed < 64 * 1024, "inflated {decompressed} bytes");
}

#[test]
fn gzip_bomb_in_a_gnu_long_name_record_is_refused_before_buffering() {
    let header = raw_header(b"././@LongLink", EntryType::GNULongName, GIB, 0o644);
    let bomb = gzip_with_zero_tail(header.as_bytes(), GIB);
    let (result, decompressed) = read_tar_gz_metered(&bomb, &ArchiveLimits::default());
    let error = result.unwrap_err();
    assert!(
        matches!(&error, ArchiveError::InvalidHeader { path, .. } if path == "././@LongLink"),
        "{error:?}"
    );
    assert!(decompressed < 64 * 1024, "inflated {decompressed} bytes");
}

#[test]
fn gzip_bomb_in_a_skipped_pax_global_header_is_stopped_at_the_limit() {
    // Skipped data still flows through the meter, so it cannot inflate past the limit either.
    let header = raw_header(b"pax_global_header", EntryType::XGlobalHeader, GIB, 0o644);
    let bomb = gzip_with_zero_tail(header.as_bytes(), GIB);
    let limits = ArchiveLimits {
        max_uncompressed: 8 << 20,
        ..ArchiveLimits::default()
    };
    let (result, decompressed) = read_tar_gz_metered(&bomb, &limits);
    assert_eq!(
        result.unwrap_err(),
        ArchiveError::UncompressedTooLarge {
            path: Some("pax_global_header".into()),
            limit: 8 << 20
        }
    );
    assert_eq!(decompressed, (8 << 20) + 1);
}

#[test]
fn gzip_bomb_after_the_end_of_archive_is_stopped_at_the_limit() {
    // A valid small chart followed by a gigabyte of zeros: the tar reader stops at the first zero
    // block, and the trailing read that checks the gzip trailer must not inflate it all.
    let tar = tar_bytes(&chart_items(CHART_YAML));
    let bomb = gzip_with_zero_tail(&tar, GIB);
    let limits = ArchiveLimits::default();
    let (result, decompressed) = read_tar_gz_metered(&bomb, &limits);
    assert_eq!(
        result.unwrap_err(),
        ArchiveError::UncompressedTooLarge {
            path: Some("collectd/values.yaml".into()),
            limit: limits.max_uncompressed
        }
    );
    assert_eq!(decompressed, limits.max_uncompressed + 1);
}

// ---------------------------------------------------------------------------------------------
// Charts
// ---------------------------------------------------------------------------------------------

#[test]
fn reads_chart_name_version_and_root() {
    let chart = read_chart(&tgz(&chart_items(CHART_YAML)), &ArchiveLimits::default()).unwrap();
    assert_eq!(chart.name, "collectd");
    assert_eq!(chart.version.as_deref(), Some("0.2.0"));
    assert_eq!(chart.root_dir, "collectd");
    assert_eq!(chart.archive.files.len(), 3);
}

#[test]
fn chart_name_falls_back_to_the_directory() {
    for chart_yaml in [
        &b"apiVersion: v1\nversion: 1\n"[..],
        b"name: \"\"\nversion: 1\n",
    ] {
        let chart = read_chart(&tgz(&chart_items(chart_yaml)), &ArchiveLimits::default()).unwrap();
        assert_eq!(chart.name, "collectd");
        assert_eq!(chart.version.as_deref(), Some("1"));
    }
}

#[test]
fn chart_name_may_differ_from_the_directory() {
    let chart = read_chart(
        &tgz(&chart_items(b"name: other\nversion: 0.1.0\n")),
        &ArchiveLimits::default(),
    )
    .unwrap();
    assert_eq!(chart.name, "other");
    assert_eq!(chart.root_dir, "collectd");
}

#[test]
fn chart_accepts_dot_slash_prefixed_layout() {
    let items = [
        Item::Dir("./"),
        Item::Dir("./m3db/"),
        Item::File(
            "./m3db/Chart.yaml",
            b"apiVersion: v1\nname: m3db\nversion: 0.1.1\n",
        ),
        Item::File("./m3db/values.yaml", b"a: 1\n"),
    ];
    let chart = read_chart(&tgz(&items), &ArchiveLimits::default()).unwrap();
    assert_eq!(
        (chart.name.as_str(), chart.root_dir.as_str()),
        ("m3db", "m3db")
    );
}

#[test]
fn chart_without_chart_yaml_is_rejected() {
    let items = [Item::Dir("app/"), Item::File("app/values.yaml", b"a: 1\n")];
    let error = read_chart(&tgz(&items), &ArchiveLimits::default()).unwrap_err();
    assert_eq!(
        error,
        ArchiveError::MissingChartYaml {
            path: "app/Chart.yaml".into()
        }
    );
    // A subchart's Chart.yaml does not count for the top-level chart.
    let items = [Item::File("app/charts/sub/Chart.yaml", b"name: sub\n")];
    let error = read_chart(&tgz(&items), &ArchiveLimits::default()).unwrap_err();
    assert_eq!(
        error,
        ArchiveError::MissingChartYaml {
            path: "app/Chart.yaml".into()
        }
    );
}

#[test]
fn chart_with_two_top_level_directories_is_rejected() {
    let items = [
        Item::File("a/Chart.yaml", CHART_YAML),
        Item::File("b/Chart.yaml", CHART_YAML),
    ];
    let error = read_chart(&tgz(&items), &ArchiveLimits::default()).unwrap_err();
    assert_eq!(
        error,
        ArchiveError::NotSingleTopLevelDir {
            root_dir: "a".into(),
            path: "b/Chart.yaml".into()
        }
    );
}

#[test]
fn chart_with_files_at_the_root_is_rejected() {
    let items = [
        Item::File("Chart.yaml", CHART_YAML),
        Item::File("templates/a.yaml", b""),
    ];
    let error = read_chart(&tgz(&items), &ArchiveLimits::default()).unwrap_err();
    assert!(
        matches!(&error, ArchiveError::NotSingleTopLevelDir { path, .. } if path == "Chart.yaml"),
        "{error:?}"
    );
    let mut items = chart_items(CHART_YAML);
    items.push(Item::File("README.md", b"stray"));
    let error = read_chart(&tgz(&items), &ArchiveLimits::default()).unwrap_err();
    assert!(
        matches!(&error, ArchiveError::NotSingleTopLevelDir { path, .. } if path == "README.md"),
        "{error:?}"
    );
}

#[test]
fn chart_with_invalid_chart_yaml_is_rejected() {
    for chart_yaml in [&b"- a\n- b\n"[..], b"name: [unclosed\n", b"name: {a: b}\n"] {
        let error =
            read_chart(&tgz(&chart_items(chart_yaml)), &ArchiveLimits::default()).unwrap_err();
        assert!(
            matches!(&error, ArchiveError::InvalidChartYaml { path, .. } if path == "collectd/Chart.yaml"),
            "{error:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Profiles
// ---------------------------------------------------------------------------------------------

#[test]
fn reads_profile_manifest_and_values() {
    let items = [
        Item::Dir("./"),
        Item::File("./manifest.yaml", MANIFEST),
        Item::File("./override_values.yaml", b"replicaCount: 2\n"),
    ];
    let profile = read_profile(&tgz(&items), &ArchiveLimits::default()).unwrap();
    assert_eq!(profile.manifest.version.as_deref(), Some("v1"));
    assert_eq!(profile.manifest.values_path, "override_values.yaml");
    assert!(profile.manifest.config_resources.is_empty());
    assert_eq!(profile.values(), Some(&b"replicaCount: 2\n"[..]));
}

#[test]
fn reads_profile_config_resources() {
    let manifest = b"version: v1\ntype:\n  values: ./vals/values.yaml\n  configresource:\n    - filepath: config.yaml\n      chartpath: chart/config/resources/config.yaml\n";
    let items = [
        Item::File("manifest.yaml", manifest),
        Item::File("vals/values.yaml", b"a: 1\n"),
        Item::File("config.yaml", b"c: 2\n"),
    ];
    let profile = read_profile(&tgz(&items), &ArchiveLimits::default()).unwrap();
    assert_eq!(profile.manifest.values_path, "vals/values.yaml");
    assert_eq!(
        profile.manifest.config_resources,
        [ConfigResource {
            file_path: "config.yaml".into(),
            chart_path: "chart/config/resources/config.yaml".into()
        }]
    );
}

#[test]
fn profile_without_root_manifest_is_rejected() {
    for items in [
        &[Item::File("override_values.yaml", b"a: 1\n")][..],
        &[
            Item::File("profile/manifest.yaml", MANIFEST),
            Item::File("profile/override_values.yaml", b""),
        ][..],
    ] {
        let error = read_profile(&tgz(items), &ArchiveLimits::default()).unwrap_err();
        assert_eq!(
            error,
            ArchiveError::MissingManifest {
                path: "manifest.yaml".into()
            }
        );
    }
}

#[test]
fn profile_naming_a_missing_values_file_is_rejected() {
    let error = read_profile(
        &tgz(&[Item::File("manifest.yaml", MANIFEST)]),
        &ArchiveLimits::default(),
    )
    .unwrap_err();
    assert_eq!(
        error,
        ArchiveError::MissingProfileFile {
            path: "override_values.yaml".into(),
            manifest: "manifest.yaml".into()
        }
    );
    let manifest = b"version: v1\ntype:\n  values: values.yaml\n  configresource:\n    - filepath: gone.yaml\n      chartpath: a.yaml\n";
    let items = [
        Item::File("manifest.yaml", manifest),
        Item::File("values.yaml", b""),
    ];
    let error = read_profile(&tgz(&items), &ArchiveLimits::default()).unwrap_err();
    assert!(
        matches!(&error, ArchiveError::MissingProfileFile { path, .. } if path == "gone.yaml"),
        "{error:?}"
    );
}

#[test]
fn profile_manifest_problems_are_rejected() {
    let cases: [&[u8]; 9] = [
        b"",      // empty
        b"---\n", // an empty document
        b"version: v1\n",                                                      // no type.values
        b"version: v1\ntype:\n  values: \"\"\n",                               // empty type.values
        b"version: v2\ntype:\n  values: override_values.yaml\n",               // unknown version
        b"version: v1\ntype:\n  values: ../override_values.yaml\n",            // escapes the profile
        b"version: v1\ntype:\n  values: /override_values.yaml\n",              // absolute
        b"version: v1\ntype:\n  values: override_values.yaml\n  configresource:\n    - filepath: override_values.yaml\n      chartpath: ../../etc/x\n",
        b"type: [not, a, mapping]\n",                                           // wrong shape
    ];
    for manifest in cases {
        let items = [
            Item::File("manifest.yaml", manifest),
            Item::File("override_values.yaml", b""),
        ];
        let error = read_profile(&tgz(&items), &ArchiveLimits::default()).unwrap_err();
        assert!(
            matches!(&error, ArchiveError::InvalidManifest { path, .. } if path == "manifest.yaml"),
            "{}: {error:?}",
            String::from_utf8_lossy(manifest)
        );
    }
}

#[test]
fn profile_manifest_without_version_is_accepted_like_upstream() {
    let items = [
        Item::File("manifest.yaml", b"type:\n  values: override_values.yaml\n"),
        Item::File("override_values.yaml", b""),
    ];
    let profile = read_profile(&tgz(&items), &ArchiveLimits::default()).unwrap();
    assert_eq!(profile.manifest.version, None);
}

#[test]
fn errors_name_the_offending_entry() {
    let error = read(&[Item::Symlink("chart/templates/link.yaml", "../../x")]).unwrap_err();
    assert!(
        error.to_string().contains("chart/templates/link.yaml"),
        "{error}"
    );
    let error = read(&[Item::File("../escape", b"")]).unwrap_err();
    assert!(error.to_string().contains("../escape"), "{error}");
}

// ---------------------------------------------------------------------------------------------
// Path normalization
// ---------------------------------------------------------------------------------------------

#[test]
fn normalize_path_cases() {
    assert_eq!(normalize_path("./a//b/./c/").unwrap(), "a/b/c");
    assert_eq!(normalize_path(".").unwrap(), "");
    assert_eq!(normalize_path("").unwrap(), "");
    assert_eq!(normalize_path("a/.../b").unwrap(), "a/.../b");
    assert_eq!(normalize_path("..a/b..").unwrap(), "..a/b..");
    assert_eq!(normalize_path("/a"), Err(PathProblem::Absolute));
    assert_eq!(normalize_path("a/../b"), Err(PathProblem::ParentDir));
    assert!(matches!(
        normalize_path("a\\b"),
        Err(PathProblem::Invalid(_))
    ));
}

// ---------------------------------------------------------------------------------------------
// Property tests: no input panics, and nothing accepted breaks a limit or safety rule
// ---------------------------------------------------------------------------------------------

fn small_limits() -> ArchiveLimits {
    ArchiveLimits {
        max_compressed: 64 * 1024,
        max_uncompressed: 32 * 1024,
        max_entries: 12,
        max_path_len: 128,
        max_depth: 4,
    }
}

/// Checks every guarantee `read_tar_gz` makes about what it returns and how much it inflates.
fn assert_within_limits(bytes: &[u8], limits: &ArchiveLimits) {
    let (result, decompressed) = read_tar_gz_metered(bytes, limits);
    assert!(
        decompressed <= limits.max_uncompressed + 1,
        "inflated {decompressed} bytes"
    );
    let Ok(archive) = result else { return };
    assert!(!archive.files.is_empty());
    assert!(archive.files.len() <= limits.max_entries);
    assert!(archive.total_size() <= limits.max_uncompressed);
    let mut seen = HashSet::new();
    for file in &archive.files {
        assert!(file.path.len() <= limits.max_path_len, "{}", file.path);
        assert!(
            !file.path.is_empty() && !file.path.starts_with('/'),
            "{}",
            file.path
        );
        assert!(
            file.path.split('/').count() <= limits.max_depth,
            "{}",
            file.path
        );
        assert!(
            file.path
                .split('/')
                .all(|part| !matches!(part, "" | "." | "..")),
            "{}",
            file.path
        );
        assert!(file.mode <= 0o777);
        assert!(seen.insert(file.path.clone()), "duplicate {}", file.path);
    }
    // Whatever the chart and profile readers say, they must not panic either.
    let _ = read_chart(bytes, limits);
    let _ = read_profile(bytes, limits);
}

fn seed_tar() -> Vec<u8> {
    tar_bytes(&[
        Item::Dir("./"),
        Item::File("./manifest.yaml", MANIFEST),
        Item::File("./override_values.yaml", b"replicaCount: 2\n"),
        Item::Dir("./c/"),
        Item::File("./c/Chart.yaml", CHART_YAML),
        Item::GnuLongFile(
            "c/templates/a-template-file-name-long-enough-to-need-a-gnu-long-name-record-because-it-is-past-100-bytes.yaml",
            b"kind: x\n",
        ),
    ])
}

#[derive(Debug, Clone)]
enum Mutation {
    Set(usize, u8),
    Flip(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Set(at, byte)),
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip(at, bit)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..64))
            .prop_map(|(at, bytes)| Mutation::Insert(at, bytes)),
        (any::<usize>(), 1usize..600).prop_map(|(at, len)| Mutation::Remove(at, len)),
    ]
}

fn apply(bytes: &mut Vec<u8>, mutations: &[Mutation]) {
    for mutation in mutations {
        if bytes.is_empty() {
            return;
        }
        let len = bytes.len();
        match mutation {
            Mutation::Set(at, byte) => bytes[at % len] = *byte,
            Mutation::Flip(at, bit) => bytes[at % len] ^= 1 << bit,
            Mutation::Truncate(at) => bytes.truncate(at % len),
            Mutation::Insert(at, extra) => {
                let at = at % len;
                bytes.splice(at..at, extra.iter().copied());
            }
            Mutation::Remove(at, count) => {
                let at = at % len;
                bytes.drain(at..(at + count).min(len));
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        assert_within_limits(&bytes, &small_limits());
        let mut with_magic = GZIP_MAGIC.to_vec();
        with_magic.extend_from_slice(&bytes);
        assert_within_limits(&with_magic, &small_limits());
    }

    #[test]
    fn gzipped_arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..8192)) {
        assert_within_limits(&gzip(&bytes), &small_limits());
    }

    #[test]
    fn mutated_tar_inside_valid_gzip_never_panics(mutations in prop::collection::vec(mutation(), 1..6)) {
        let mut tar = seed_tar();
        apply(&mut tar, &mutations);
        assert_within_limits(&gzip(&tar), &small_limits());
        assert_within_limits(&gzip(&tar), &ArchiveLimits::default());
    }

    #[test]
    fn mutated_tgz_never_panics(mutations in prop::collection::vec(mutation(), 1..6)) {
        let mut bytes = gzip(&seed_tar());
        apply(&mut bytes, &mutations);
        assert_within_limits(&bytes, &small_limits());
        assert_within_limits(&bytes, &ArchiveLimits::default());
    }
}

#[test]
fn seed_archive_is_accepted_so_mutations_start_from_a_valid_input() {
    let archive = read_tar_gz(&gzip(&seed_tar()), &small_limits()).unwrap();
    assert_eq!(archive.files.len(), 4);
    let profile = read_profile(&gzip(&seed_tar()), &small_limits()).unwrap();
    assert_eq!(profile.manifest.values_path, "override_values.yaml");
}
