//! Gzipped tar archives (charts, profiles) built in memory, for the end-to-end tests and the
//! benchmarks (included by `#[path]` where `support` as a whole is not wanted).

/// A gzipped tar archive of `files` (path, contents).
pub fn tar_gz<P, C>(files: &[(P, C)]) -> anyhow::Result<Vec<u8>>
where
    P: AsRef<str>,
    C: AsRef<[u8]>,
{
    let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(encoder);
    for (path, contents) in files {
        let contents = contents.as_ref();
        let mut header = tar::Header::new_gnu();
        header.set_size(contents.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, path.as_ref(), contents)?;
    }
    Ok(tar.into_inner()?.finish()?)
}
