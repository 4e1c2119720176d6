//! Configuration problems, each pinned to `file:line:col` in the operator's file.

use std::fmt;
use std::ops::Range;

/// One problem found in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.col, self.reason
        )
    }
}

/// Every problem found in one file; never empty.
#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Collects problems while a file is checked, turning byte spans into line and column.
pub struct Problems<'a> {
    file: &'a str,
    text: &'a str,
    found: Vec<ConfigError>,
    /// Things that work but are likely not what the operator meant (e.g. two parts
    /// of a flat merge that write the same key): printed, never refused.
    warnings: Vec<ConfigError>,
}

impl<'a> Problems<'a> {
    pub fn new(file: &'a str, text: &'a str) -> Self {
        Problems {
            file,
            text,
            found: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// Records a problem at `span` (a byte range in the file; `0..0` means the top).
    pub fn at(&mut self, span: Range<usize>, reason: impl Into<String>) {
        let e = self.error_at(span, reason.into());
        self.found.push(e);
    }

    /// Records a warning at `span`; its reason is shown as `warning: REASON`.
    pub fn warn(&mut self, span: Range<usize>, reason: impl Into<String>) {
        let e = self.error_at(span, format!("warning: {}", reason.into()));
        self.warnings.push(e);
    }

    /// The warnings recorded so far, in file order.
    pub fn take_warnings(&mut self) -> Vec<ConfigError> {
        let mut w = std::mem::take(&mut self.warnings);
        w.sort_by_key(|e| (e.line, e.col));
        w.dedup();
        w
    }

    fn error_at(&self, span: Range<usize>, reason: String) -> ConfigError {
        let (line, col) = line_col(self.text, span.start);
        ConfigError {
            file: self.file.to_string(),
            line,
            col,
            reason,
        }
    }

    /// How many problems have been recorded so far.
    pub fn count(&self) -> usize {
        self.found.len()
    }

    pub fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    pub fn into_result(mut self) -> Result<(), ConfigErrors> {
        if self.found.is_empty() {
            Ok(())
        } else {
            self.found.sort_by_key(|e| (e.line, e.col));
            self.found.dedup();
            Err(ConfigErrors(self.found))
        }
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::line_col;

    #[test]
    fn line_and_column_are_one_based() {
        let t = "a = 1\nbb = 2\n";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 6), (2, 1));
        assert_eq!(line_col(t, 9), (2, 4));
        assert_eq!(line_col(t, 1000), (3, 1));
    }
}
