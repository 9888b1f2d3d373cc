//! Data: datasets, a shuffling mini-batch loader, CSV tables with the course's
//! preprocessing, and the handwritten-digits set that ships with the project.

mod csv_table;

pub use csv_table::{Column, Table};

use crate::device::Device;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::rng::Generator;
use crate::tensor::Tensor;

/// A collection of examples that can be fetched in batches.
pub trait Dataset {
    /// Number of examples.
    fn len(&self) -> usize;
    /// Whether there are no examples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Inputs and targets of the examples at `indices`, stacked along a new first dim.
    fn get(&self, indices: &[usize]) -> Result<(Tensor, Tensor)>;
}

/// Inputs and targets held as two tensors whose first dim indexes the examples.
#[derive(Clone)]
pub struct TensorDataset {
    x: Tensor,
    y: Tensor,
}

impl TensorDataset {
    /// Pair inputs and targets; their first dims must agree.
    pub fn new(x: Tensor, y: Tensor) -> Result<TensorDataset> {
        if x.ndim() == 0 || y.ndim() == 0 || x.shape()[0] != y.shape()[0] {
            return Err(Error::shapes(
                "TensorDataset",
                x.shape(),
                y.shape(),
                "inputs and targets need the same number of examples (first dim)",
            ));
        }
        Ok(TensorDataset { x, y })
    }

    /// The examples `start..end` as a new dataset (views, no copy).
    pub fn range(&self, start: usize, end: usize) -> Result<TensorDataset> {
        if start > end {
            return Err(Error::invalid(
                "TensorDataset::range",
                format!("start {start} is past end {end}"),
            ));
        }
        TensorDataset::new(
            self.x.narrow(0, start, end - start)?,
            self.y.narrow(0, start, end - start)?,
        )
    }

    /// All inputs.
    pub fn inputs(&self) -> &Tensor {
        &self.x
    }

    /// All targets.
    pub fn targets(&self) -> &Tensor {
        &self.y
    }
}

impl Dataset for TensorDataset {
    fn len(&self) -> usize {
        self.x.shape()[0]
    }
    fn get(&self, indices: &[usize]) -> Result<(Tensor, Tensor)> {
        // Checked here, where the index is a usize: as an i64 a huge one would wrap negative.
        let n = self.len();
        if let Some(&bad) = indices.iter().find(|&&i| i >= n) {
            return Err(Error::IndexOutOfRange {
                op: "TensorDataset::get",
                index: i64::try_from(bad).unwrap_or(i64::MAX),
                dim: 0,
                size: n,
                shape: self.x.shape().to_vec(),
            });
        }
        let idx = Tensor::from_vec(
            indices.iter().map(|&i| i as i64).collect::<Vec<_>>(),
            [indices.len()],
        )?
        .to_device(self.x.device())?;
        Ok((self.x.index_select(0, &idx)?, self.y.index_select(0, &idx)?))
    }
}

/// Mini-batches of a dataset: optionally shuffled with a seed (a new order each epoch,
/// the same orders every run), the last short batch optionally dropped, batches moved to
/// the chosen device.
pub struct DataLoader<'a> {
    dataset: &'a dyn Dataset,
    batch_size: usize,
    shuffle: bool,
    seed: u64,
    drop_last: bool,
    device: Device,
}

impl<'a> DataLoader<'a> {
    /// Batches of `batch_size` in order, on the CPU.
    pub fn new(dataset: &'a dyn Dataset, batch_size: usize) -> Result<DataLoader<'a>> {
        if batch_size == 0 {
            return Err(Error::invalid("DataLoader", "batch_size must be positive"));
        }
        Ok(DataLoader {
            dataset,
            batch_size,
            shuffle: false,
            seed: 0,
            drop_last: false,
            device: Device::Cpu,
        })
    }
    /// Shuffle every epoch, reproducibly from `seed`.
    pub fn shuffle(mut self, seed: u64) -> Self {
        self.shuffle = true;
        self.seed = seed;
        self
    }
    /// Skip the last batch when it is smaller than `batch_size`.
    pub fn drop_last(mut self, on: bool) -> Self {
        self.drop_last = on;
        self
    }
    /// Put the batches on `device`.
    pub fn device(mut self, device: &Device) -> Self {
        self.device = device.clone();
        self
    }

    /// Number of batches per epoch.
    pub fn num_batches(&self) -> usize {
        let n = self.dataset.len();
        if self.drop_last {
            n / self.batch_size
        } else {
            n.div_ceil(self.batch_size)
        }
    }

    /// The batches of epoch `epoch` (the epoch selects the shuffle order).
    pub fn epoch(&self, epoch: u64) -> impl Iterator<Item = Result<(Tensor, Tensor)>> + '_ {
        let n = self.dataset.len();
        let order: Vec<usize> = if self.shuffle {
            let mut g = Generator::new(
                self.seed
                    .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                    .wrapping_add(epoch),
            );
            g.permutation(n).into_iter().map(|i| i as usize).collect()
        } else {
            (0..n).collect()
        };
        (0..self.num_batches()).map(move |b| {
            let idx = &order[b * self.batch_size..((b + 1) * self.batch_size).min(n)];
            let (x, y) = self.dataset.get(idx)?;
            Ok((x.to_device(&self.device)?, y.to_device(&self.device)?))
        })
    }
}

/// The handwritten digits (UCI optdigits, as shipped with scikit-learn): 8x8 images with
/// pixel values 0..16, scaled to [0, 1], as `[N, 64]` F32 inputs and `[N]` I64 labels.
/// Reads the gzip-compressed CSV at `path` (`data/digits.csv.gz` in this repository).
pub fn load_digits(path: impl AsRef<std::path::Path>) -> Result<(Tensor, Tensor)> {
    let path = path.as_ref();
    let file = std::fs::File::open(path).map_err(|e| Error::Io {
        op: "load_digits",
        msg: format!("{}: {e}", path.display()),
    })?;
    read_digits(file, &path.display().to_string())
}

/// [`load_digits`] from a reader of the gzip bytes (`source` names it in errors).
pub fn read_digits(file: impl std::io::Read, source: &str) -> Result<(Tensor, Tensor)> {
    read_images(file, source, DIGITS)
}

/// The 5,000 MNIST digits that ship with wgrad (`data/mnist_5k.csv.gz`, 500 per class in
/// label order: shuffle before splitting): 28x28 images with pixel values 0..255, scaled to
/// [0, 1], as `[N, 784]` F32 inputs and `[N]` I64 labels.
pub fn load_mnist(path: impl AsRef<std::path::Path>) -> Result<(Tensor, Tensor)> {
    let path = path.as_ref();
    let file = std::fs::File::open(path).map_err(|e| Error::Io {
        op: "load_mnist",
        msg: format!("{}: cannot open: {e}", path.display()),
    })?;
    read_mnist(file, &path.display().to_string())
}

/// [`load_mnist`] from a reader of the gzip bytes (`source` names it in errors).
pub fn read_mnist(file: impl std::io::Read, source: &str) -> Result<(Tensor, Tensor)> {
    read_images(file, source, MNIST)
}

/// A gzip CSV of labelled images: `pixels` values in `0..=max` per line, then a label 0..9.
struct ImageCsv {
    op: &'static str,
    pixels: usize,
    max: f32,
}

const DIGITS: ImageCsv = ImageCsv {
    op: "load_digits",
    pixels: 64,
    max: 16.0,
};

const MNIST: ImageCsv = ImageCsv {
    op: "load_mnist",
    pixels: 784,
    max: 255.0,
};

fn read_images(
    file: impl std::io::Read,
    source: &str,
    format: ImageCsv,
) -> Result<(Tensor, Tensor)> {
    let ImageCsv { op, pixels, max } = format;
    let path = std::path::Path::new(source);
    // Every member of a multi-member gzip file (as `cat a.gz b.gz` makes), read a line at a
    // time: a bad line is reported without reading the rest of a large file.
    let reader = std::io::BufReader::new(flate2::read::MultiGzDecoder::new(file));
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for (i, line) in std::io::BufRead::lines(reader).enumerate() {
        let line = line.map_err(|e| Error::Io {
            op,
            msg: format!("{} line {}: not gzip text: {e}", path.display(), i + 1),
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != pixels + 1 {
            return Err(Error::Io {
                op,
                msg: format!(
                    "{} line {}: expected {} fields, found {}",
                    path.display(),
                    i + 1,
                    pixels + 1,
                    fields.len()
                ),
            });
        }
        for (j, f) in fields.iter().enumerate() {
            let v: f32 = f.trim().parse().map_err(|_| Error::Io {
                op,
                msg: format!(
                    "{} line {}: field {} is not a number: {f:?}",
                    path.display(),
                    i + 1,
                    j + 1
                ),
            })?;
            let valid = if j < pixels {
                v.is_finite() && (0.0..=max).contains(&v)
            } else {
                v.fract() == 0.0 && (0.0..10.0).contains(&v)
            };
            if !valid {
                return Err(Error::Io {
                    op,
                    msg: format!(
                        "{} line {}: field {} is {f:?}, expected {}",
                        path.display(),
                        i + 1,
                        j + 1,
                        if j < pixels {
                            format!("a pixel in 0..={max}")
                        } else {
                            "a label 0..=9".to_string()
                        }
                    ),
                });
            }
            if j < pixels {
                xs.push(v / max);
            } else {
                ys.push(v as i64);
            }
        }
    }
    let n = ys.len();
    Ok((
        Tensor::from_vec(xs, [n, pixels])?,
        Tensor::from_vec(ys, [n])?.to_dtype(DType::I64)?,
    ))
}
