//! Writing DEST: its manifest, and the images decoded, resized and stored
//! as PNG by a reader thread feeding worker threads.

use super::pieces::{for_each_tar_member, open_zip, Piece, Store};
use super::{Corpus, Manifest, PrepareOptions, MANIFEST};
use crate::data::karpathy::square_rgb;
use crate::error::{Error, Result};
use crate::io::write_atomic;
use crate::progress::Progress;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex};

/// One image to convert.
pub(super) struct Job {
    pub(super) entry: usize,
    pub(super) piece: usize,
    pub(super) store: usize,
    pub(super) member: String,
    pub(super) out: PathBuf,
}

/// Reads the manifest of `dest`: `None` when DEST is empty or absent; an
/// error when DEST holds something else, or another preparation.
pub(super) fn read_manifest(dest: &Path, ds: Corpus, size: u32) -> Result<Option<Manifest>> {
    let path = dest.join(MANIFEST);
    if !path.is_file() {
        let non_empty = std::fs::read_dir(dest)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false);
        if non_empty {
            return Err(Error::Config(format!(
                "{} is not empty and has no {MANIFEST}: it was not written by \
                 `vl-distill data prepare` (maybe your own copy?); choose a new or empty --out",
                dest.display()
            )));
        }
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let m: Manifest = serde_json::from_str(&text).map_err(|e| Error::Json {
        path: path.clone(),
        message: e.to_string(),
    })?;
    if m.dataset != ds.name() {
        return Err(Error::Config(format!(
            "{} holds a prepared {}, not {}: choose another --out",
            dest.display(),
            m.dataset,
            ds.name()
        )));
    }
    if m.image_size != size {
        return Err(Error::Config(format!(
            "{} was prepared at {} px, not {size}: choose another --out or remove it",
            dest.display(),
            m.image_size
        )));
    }
    Ok(Some(m))
}

/// Creates DEST and marks it unfinished.
pub(super) fn start_dest(dest: &Path, ds: Corpus, opts: &PrepareOptions) -> Result<()> {
    std::fs::create_dir_all(dest).map_err(|e| Error::io(dest, e))?;
    write_manifest(
        dest,
        &Manifest {
            tool: "vl-distill data prepare".into(),
            dataset: ds.name().into(),
            image_size: opts.image_size,
            format: "png".into(),
            complete: false,
            source: opts.source.display().to_string(),
            splits: [0; 3],
            captions: 0,
            missing: Vec::new(),
            unreadable: Vec::new(),
            warnings: Vec::new(),
        },
    )
}

/// Writes the manifest `DEST/prepare.json`.
pub(super) fn write_manifest(dest: &Path, m: &Manifest) -> Result<()> {
    let mut text = serde_json::to_string_pretty(m).expect("manifest serialises");
    text.push('\n');
    write_atomic(&dest.join(MANIFEST), text.as_bytes())
}

/// Why one image could not be converted.
enum Failure {
    /// It cannot be decoded (the message).
    Corrupt(String),
    /// Writing failed: the whole preparation stops.
    Fatal(Error),
}

/// Decodes, resizes and writes one image.
fn convert(bytes: &[u8], size: u32, out: &Path) -> std::result::Result<(), Failure> {
    let img = image::load_from_memory(bytes).map_err(|e| Failure::Corrupt(e.to_string()))?;
    let rgb = square_rgb(img, size);
    let mut png = Vec::with_capacity(rgb.as_raw().len() / 2);
    rgb.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| Failure::Fatal(Error::Encode(format!("{}: {e}", out.display()))))?;
    write_atomic(out, &png).map_err(Failure::Fatal)
}

/// Converts every job: one thread reads (folders, zips, tar streams), the
/// others decode, resize and write. Returns the jobs (by index) whose image
/// could not be decoded, in job order; without `allow_missing` it stops at
/// the first such image.
pub(super) fn convert_all(
    pieces: &[Piece],
    jobs: &[Job],
    opts: &PrepareOptions,
    bar: &Progress,
) -> Result<Vec<(usize, String)>> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .max(1);
    let (tx, rx) = mpsc::sync_channel::<(usize, Vec<u8>)>(4 * workers);
    let rx = Mutex::new(rx);
    let failures: Mutex<Vec<(usize, String)>> = Mutex::new(Vec::new());
    let fatal: Mutex<Option<Error>> = Mutex::new(None);
    let stop = AtomicBool::new(false);
    let result = std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let job = rx.lock().expect("queue").recv();
                let Ok((j, bytes)) = job else { break };
                if stop.load(Ordering::Relaxed) {
                    continue;
                }
                match convert(&bytes, opts.image_size, &jobs[j].out) {
                    Ok(()) => bar.inc(""),
                    Err(Failure::Corrupt(why)) => {
                        failures.lock().expect("failures").push((j, why));
                        if !opts.allow_missing {
                            stop.store(true, Ordering::Relaxed);
                        }
                        bar.inc("");
                    }
                    Err(Failure::Fatal(e)) => {
                        fatal.lock().expect("fatal").get_or_insert(e);
                        stop.store(true, Ordering::Relaxed);
                    }
                }
            });
        }
        let r = produce(pieces, jobs, &tx, &stop, &failures, opts.allow_missing);
        drop(tx);
        r
    });
    result?;
    if let Some(e) = fatal.into_inner().expect("fatal") {
        return Err(e);
    }
    let mut failures = failures.into_inner().expect("failures");
    failures.sort_by_key(|(j, _)| *j);
    Ok(failures)
}

/// Sends each job's bytes to the workers, store by store. An image whose
/// bytes cannot be read from a zip (a damaged member) counts as undecodable.
fn produce(
    pieces: &[Piece],
    jobs: &[Job],
    tx: &mpsc::SyncSender<(usize, Vec<u8>)>,
    stop: &AtomicBool,
    failures: &Mutex<Vec<(usize, String)>>,
    allow_missing: bool,
) -> Result<()> {
    let mut by_store: HashMap<(usize, usize), Vec<usize>> = HashMap::new();
    for (j, job) in jobs.iter().enumerate() {
        by_store.entry((job.piece, job.store)).or_default().push(j);
    }
    let mut keys: Vec<(usize, usize)> = by_store.keys().copied().collect();
    keys.sort_unstable();
    let send = |j: usize, bytes: Vec<u8>| -> bool { tx.send((j, bytes)).is_ok() };
    for key in keys {
        let list = &by_store[&key];
        let store = &pieces[key.0].stores[key.1];
        match store {
            Store::Folder(_) => {
                for &j in list {
                    if stop.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                    let p = Path::new(&jobs[j].member);
                    let bytes = std::fs::read(p).map_err(|e| Error::io(p, e))?;
                    if !send(j, bytes) {
                        return Ok(());
                    }
                }
            }
            Store::Zip(path) => {
                let mut zip = open_zip(path)?;
                for &j in list {
                    if stop.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                    let mut bytes = Vec::new();
                    let read = zip
                        .by_name(&jobs[j].member)
                        .map_err(|e| e.to_string())
                        .and_then(|mut f| f.read_to_end(&mut bytes).map_err(|e| e.to_string()));
                    match read {
                        Ok(_) => {
                            if !send(j, bytes) {
                                return Ok(());
                            }
                        }
                        Err(why) => {
                            failures
                                .lock()
                                .expect("failures")
                                .push((j, format!("cannot read it from the archive: {why}")));
                            if !allow_missing {
                                return Ok(());
                            }
                        }
                    }
                }
            }
            Store::TarGz(path) | Store::Tar(path) => {
                let mut wanted: HashMap<&str, usize> =
                    list.iter().map(|&j| (jobs[j].member.as_str(), j)).collect();
                let file = File::open(path).map_err(|e| Error::io(path, e))?;
                let reader: Box<dyn Read> = if matches!(store, Store::TarGz(_)) {
                    Box::new(flate2::read::GzDecoder::new(BufReader::new(file)))
                } else {
                    Box::new(BufReader::new(file))
                };
                let mut stopped = false;
                // Reading stops once every wanted member was sent.
                for_each_tar_member(store, reader, &mut |member, r| {
                    if let Some(j) = wanted.remove(member.as_str()) {
                        let mut bytes = Vec::new();
                        r.read_to_end(&mut bytes).map_err(|e| store.damaged(e))?;
                        if !send(j, bytes) || stop.load(Ordering::Relaxed) {
                            stopped = true;
                            return Ok(false);
                        }
                    }
                    Ok(!wanted.is_empty())
                })?;
                if stopped {
                    return Ok(());
                }
            }
        }
    }
    Ok(())
}
