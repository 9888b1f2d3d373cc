//! CSV tables with the course's preprocessing (section 2.2.3): missing numbers filled with
//! the column mean, categorical columns one-hot encoded with a column for missing values
//! (pandas' `get_dummies(dummy_na=True)`), then a tensor.

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Values that mean "missing", as pandas reads them by default.
const NA: &[&str] = &["", "NA", "N/A", "NaN", "nan", "null", "NULL"];

/// One column of a table.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    /// Numbers; `None` is missing.
    Numeric(Vec<Option<f64>>),
    /// Category labels; `None` is missing.
    Categorical(Vec<Option<String>>),
}

/// Named columns of equal length.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// Column names, in order.
    pub names: Vec<String>,
    /// The columns, in the same order.
    pub columns: Vec<Column>,
}

fn io(path: &str, msg: impl std::fmt::Display) -> Error {
    Error::Io {
        op: "read_csv",
        msg: format!("{path}: {msg}"),
    }
}

impl Table {
    /// Read a CSV file with a header row. A column is numeric when its first present value
    /// parses as a number; a later value that does not is an error naming its line.
    /// Ragged rows and unreadable files are errors too.
    pub fn read_csv(path: impl AsRef<std::path::Path>) -> Result<Table> {
        let p = path.as_ref().display().to_string();
        let text = std::fs::read_to_string(path.as_ref()).map_err(|e| io(&p, e))?;
        Table::parse_csv(&text, &p)
    }

    /// Parse CSV text (`source` names it in errors).
    pub fn parse_csv(text: &str, source: &str) -> Result<Table> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(false)
            .from_reader(text.as_bytes());
        let names: Vec<String> = reader
            .headers()
            .map_err(|e| io(source, e))?
            .iter()
            .map(|s| s.trim().to_string())
            .collect();
        let mut raw: Vec<Vec<Option<String>>> = vec![Vec::new(); names.len()];
        let mut lines = Vec::new();
        for record in reader.records() {
            let record = record.map_err(|e| match e.position() {
                Some(pos) => io(source, format!("line {}: {e}", pos.line())),
                None => io(source, e),
            })?;
            lines.push(record.position().map(|p| p.line()).unwrap_or(0));
            for (col, field) in raw.iter_mut().zip(record.iter()) {
                let f = field.trim();
                col.push(if NA.contains(&f) {
                    None
                } else {
                    Some(f.to_string())
                });
            }
        }
        if lines.is_empty() {
            // pandas raises on a file with no data ("No columns to parse"); an empty table
            // would only fail later, far from the cause.
            return Err(io(source, "the file has no data rows"));
        }
        let mut columns = Vec::with_capacity(names.len());
        for (name, values) in names.iter().zip(raw) {
            let numeric = values
                .iter()
                .flatten()
                .next()
                .is_some_and(|v| v.parse::<f64>().is_ok());
            columns.push(if numeric {
                let mut out = Vec::with_capacity(values.len());
                for (v, line) in values.iter().zip(&lines) {
                    out.push(match v {
                        None => None,
                        Some(s) => {
                            let x = s.parse::<f64>().map_err(|_| io(source, format!("line {line}: column {name:?} is numeric but {s:?} is not a number")))?;
                            // Rust reads "-nan", "inf" and the like as numbers: a NaN is a
                            // missing value (so fill_na_mean fills it), not a value.
                            if x.is_nan() { None } else { Some(x) }
                        }
                    });
                }
                Column::Numeric(out)
            } else {
                Column::Categorical(values)
            });
        }
        Ok(Table { names, columns })
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        match self.columns.first() {
            Some(Column::Numeric(v)) => v.len(),
            Some(Column::Categorical(v)) => v.len(),
            None => 0,
        }
    }

    /// The columns with these names, in this order.
    pub fn select(&self, names: &[&str]) -> Result<Table> {
        let mut out = Table {
            names: vec![],
            columns: vec![],
        };
        for n in names {
            let i = self.names.iter().position(|m| m == n).ok_or_else(|| {
                Error::invalid(
                    "Table::select",
                    format!("no column {n:?} (columns: {:?})", self.names),
                )
            })?;
            out.names.push(self.names[i].clone());
            out.columns.push(self.columns[i].clone());
        }
        Ok(out)
    }

    /// Replace missing numbers by their column's mean (pandas' `fillna(mean())`).
    pub fn fill_na_mean(mut self) -> Table {
        for c in &mut self.columns {
            if let Column::Numeric(v) = c {
                let present: Vec<f64> = v.iter().flatten().copied().collect();
                if !present.is_empty() {
                    let mean = present.iter().sum::<f64>() / present.len() as f64;
                    v.iter_mut().for_each(|x| *x = Some(x.unwrap_or(mean)));
                }
            }
        }
        self
    }

    /// One-hot encode the categorical columns: one 0/1 column per category (sorted, named
    /// `{column}_{category}`), plus `{column}_nan` for missing values when `dummy_na`.
    pub fn get_dummies(self, dummy_na: bool) -> Table {
        let mut out = Table {
            names: vec![],
            columns: vec![],
        };
        for (name, col) in self.names.into_iter().zip(self.columns) {
            match col {
                Column::Numeric(_) => {
                    out.names.push(name);
                    out.columns.push(col);
                }
                Column::Categorical(values) => {
                    let mut cats: Vec<&String> = values.iter().flatten().collect();
                    cats.sort();
                    cats.dedup();
                    let mut groups: Vec<(String, Option<&String>)> = cats
                        .iter()
                        .map(|c| (format!("{name}_{c}"), Some(*c)))
                        .collect();
                    if dummy_na {
                        groups.push((format!("{name}_nan"), None));
                    }
                    for (n, cat) in groups {
                        out.columns.push(Column::Numeric(
                            values
                                .iter()
                                .map(|v| Some((v.as_ref() == cat) as u8 as f64))
                                .collect(),
                        ));
                        out.names.push(n);
                    }
                }
            }
        }
        out
    }

    /// The table as an F32 tensor `[rows, columns]`. Every column must be numeric with no
    /// missing values (after `fill_na_mean` and `get_dummies`).
    pub fn to_tensor(&self) -> Result<Tensor> {
        // The fields are public: a table built by hand may be ragged.
        let len = |c: &Column| match c {
            Column::Numeric(v) => v.len(),
            Column::Categorical(v) => v.len(),
        };
        if self.names.len() != self.columns.len()
            || self.columns.iter().any(|c| len(c) != self.rows())
        {
            return Err(Error::invalid(
                "Table::to_tensor",
                format!(
                    "a table needs one name per column and columns of one length, got {} names and column lengths {:?}",
                    self.names.len(),
                    self.columns.iter().map(len).collect::<Vec<_>>()
                ),
            ));
        }
        let (rows, cols) = (self.rows(), self.columns.len());
        let mut data = vec![0f32; rows * cols];
        for (j, (name, c)) in self.names.iter().zip(&self.columns).enumerate() {
            let Column::Numeric(v) = c else {
                return Err(Error::invalid(
                    "Table::to_tensor",
                    format!("column {name:?} is categorical; one-hot encode it with get_dummies"),
                ));
            };
            for (i, x) in v.iter().enumerate() {
                data[i * cols + j] = x.ok_or_else(|| {
                    Error::invalid(
                        "Table::to_tensor",
                        format!("column {name:?} has a missing value in data row {}", i + 1),
                    )
                })? as f32;
            }
        }
        Tensor::from_vec(data, [rows, cols])
    }
}
