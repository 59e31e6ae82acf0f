//! Action Unit strings as the datasets write them ("4+L10", "R12 + R15", "R14A", "AU12", "L1+R2",
//! "AU4+AU12(k)") parsed into codes with laterality and intensity.
//!
//! Grammar of one item (separated by `+` or `,`, spaces ignored): an optional `AU` prefix, an optional
//! side `L` or `R`, the code (1–99), an optional FACS intensity `A`–`E`, and an optional `(k)` marker
//! (4DME). Items that say the coder was unsure ("14 or 15", "12/15", "?", "12?") are ambiguous: an
//! error unless an [`AmbiguityRule`] is chosen. Items marked `(k)` are an error unless a [`KRule`] is
//! chosen.

use serde::Serialize;
use std::fmt;
use std::str::FromStr;

/// Which side of the face an AU was coded on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// Not lateralised (both sides, or the coder did not say).
    None,
    /// Left side of the face (the subject's left).
    Left,
    /// Right side of the face.
    Right,
}

/// One coded Action Unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct AuLabel {
    /// FACS code, e.g. 12 for AU12.
    pub code: crate::au::Au,
    /// Laterality.
    pub side: Side,
    /// FACS intensity letter A (trace) to E (maximum), when coded.
    pub intensity: Option<char>,
    /// Marked "(k)" in the source (4DME), kept under [`KRule::Include`].
    pub k_marked: bool,
}

impl fmt::Display for AuLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.side {
            Side::None => {}
            Side::Left => f.write_str("L")?,
            Side::Right => f.write_str("R")?,
        }
        write!(f, "{}", self.code)?;
        if let Some(i) = self.intensity {
            write!(f, "{i}")?;
        }
        if self.k_marked {
            f.write_str("(k)")?;
        }
        Ok(())
    }
}

/// Formats labels the way CASME II writes them: "4+L10".
pub fn format_aus(aus: &[AuLabel]) -> String {
    aus.iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join("+")
}

/// What to do with an item the coder marked as uncertain ("14 or 15", "12/15", "?", "12?").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AmbiguityRule {
    /// The row is an error naming file and row (default: no silent choice of label).
    #[default]
    Error,
    /// Keep the first alternative ("14 or 15" → 14; "12?" → 12; a lone "?" is dropped).
    First,
    /// Keep every alternative ("14 or 15" → 14 and 15).
    All,
    /// Drop the uncertain item, keep the rest of the row.
    Drop,
}

impl FromStr for AmbiguityRule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "error" => Ok(Self::Error),
            "first" => Ok(Self::First),
            "all" => Ok(Self::All),
            "drop" => Ok(Self::Drop),
            _ => Err(format!("{s:?}: expected error, first, all or drop")),
        }
    }
}

/// What to do with 4DME items marked "(k)".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KRule {
    /// The row is an error naming file and row (default: the release does not define the mark).
    #[default]
    Error,
    /// Keep the AU (with `k_marked` set).
    Include,
    /// Drop the AU, as the public 4DME benchmarks (e.g. MEB) do.
    Exclude,
}

impl FromStr for KRule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "error" => Ok(Self::Error),
            "include" => Ok(Self::Include),
            "exclude" => Ok(Self::Exclude),
            _ => Err(format!("{s:?}: expected error, include or exclude")),
        }
    }
}

/// The rules [`parse_aus`] applies to uncertain and marked items.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct AuRules {
    /// Uncertain items.
    pub ambiguous: AmbiguityRule,
    /// "(k)" items.
    pub k_marked: KRule,
}

/// Parses an AU cell. Errors are plain sentences; the caller adds file and row.
pub fn parse_aus(text: &str, rules: &AuRules) -> Result<Vec<AuLabel>, String> {
    let text = text.trim();
    let mut out = Vec::new();
    if text.is_empty() {
        return Ok(out);
    }
    for raw in text.split(['+', ',']) {
        let item = raw.trim();
        if item.is_empty() {
            return Err(format!("empty item in {text:?}"));
        }
        let alternatives = split_alternatives(item);
        let uncertain = alternatives.len() > 1 || item.contains('?');
        if uncertain {
            let why = format!(
                "{} is ambiguous (choose a rule: --ambiguous first|all|drop)",
                quote_in(item, text)
            );
            let keep: Vec<&str> = match rules.ambiguous {
                AmbiguityRule::Error => return Err(why),
                AmbiguityRule::Drop => Vec::new(),
                AmbiguityRule::First => alternatives.into_iter().take(1).collect(),
                AmbiguityRule::All => alternatives,
            };
            for alt in keep {
                let alt = alt.replace('?', "");
                if alt.trim().is_empty() {
                    continue;
                }
                push_item(&mut out, alt.trim(), text, rules)?;
            }
        } else {
            push_item(&mut out, item, text, rules)?;
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// "14 or 15" and "14/15" are two alternatives; anything else is one.
fn split_alternatives(item: &str) -> Vec<&str> {
    let lower = item.to_ascii_lowercase();
    if let Some(i) = lower.find(" or ") {
        let (a, b) = (&item[..i], &item[i + 4..]);
        let mut v = vec![a.trim()];
        v.extend(split_alternatives(b.trim()));
        return v;
    }
    if item.contains('/') {
        return item.split('/').map(str::trim).collect();
    }
    vec![item]
}

fn push_item(
    out: &mut Vec<AuLabel>,
    item: &str,
    text: &str,
    rules: &AuRules,
) -> Result<(), String> {
    let label = parse_item(item).ok_or_else(|| {
        format!(
            "{} is not an AU (expected e.g. 12, L10, R14A, AU4)",
            quote_in(item, text)
        )
    })?;
    if label.k_marked {
        match rules.k_marked {
            KRule::Error => {
                return Err(format!(
                    "{} is marked (k) (choose a rule: --k-marked include|exclude)",
                    quote_in(item, text)
                ));
            }
            KRule::Exclude => return Ok(()),
            KRule::Include => {}
        }
    }
    out.push(label);
    Ok(())
}

/// `"14 or 15"`, or `"15" in "4+15?"` when the item is part of a longer cell.
fn quote_in(item: &str, text: &str) -> String {
    if item == text {
        format!("{item:?}")
    } else {
        format!("{item:?} in {text:?}")
    }
}

/// One item without separators or alternatives, e.g. "AU R14A(k)".
fn parse_item(item: &str) -> Option<AuLabel> {
    let compact: String = item.chars().filter(|c| !c.is_whitespace()).collect();
    let mut s = compact.as_str();
    let mut k_marked = false;
    for mark in ["(k)", "(K)"] {
        if let Some(rest) = s.strip_suffix(mark) {
            s = rest;
            k_marked = true;
        }
    }
    // "AU R12" and "R AU12" both occur in hand-typed sheets: strip the prefix on either side of L/R.
    let strip_au = |s: &str| -> String {
        match s.get(..2) {
            Some(p) if p.eq_ignore_ascii_case("au") => s[2..].to_string(),
            _ => s.to_string(),
        }
    };
    let mut rest = strip_au(s);
    let side = match rest.chars().next() {
        Some('L' | 'l') => Side::Left,
        Some('R' | 'r') => Side::Right,
        _ => Side::None,
    };
    if side != Side::None {
        rest = strip_au(&rest[1..]);
    }
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    if digits.is_empty() || digits.len() > 2 {
        return None;
    }
    let code: crate::au::Au = digits.parse().ok()?;
    if code == 0 {
        return None;
    }
    let tail = &rest[digits.len()..];
    let intensity = match tail {
        "" => None,
        t if t.len() == 1 => {
            let c = t.chars().next()?.to_ascii_uppercase();
            if ('A'..='E').contains(&c) {
                Some(c)
            } else {
                return None;
            }
        }
        _ => return None,
    };
    Some(AuLabel {
        code,
        side,
        intensity,
        k_marked,
    })
}

/// Formats a spreadsheet number that holds an AU list ("12" typed as a number) as text.
pub fn number_as_au_text(v: f64) -> Option<String> {
    (v.fract() == 0.0 && v > 0.0 && v < 100.0).then(|| format!("{}", v as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Vec<String> {
        parse_aus(s, &AuRules::default())
            .unwrap()
            .iter()
            .map(|a| a.to_string())
            .collect()
    }

    #[test]
    fn published_spellings_normalise() {
        assert_eq!(p("4+L10"), ["4", "L10"]);
        assert_eq!(p("R12 + R15"), ["R12", "R15"]);
        assert_eq!(p("R14A"), ["R14A"]);
        assert_eq!(p("AU12"), ["12"]);
        assert_eq!(p("L1+R2"), ["L1", "R2"]);
        assert_eq!(p("AU4, AU7"), ["4", "7"]);
        assert_eq!(p("1+2+4"), ["1", "2", "4"]);
        assert_eq!(p("12B+25"), ["12B", "25"]);
        assert_eq!(p(""), Vec::<String>::new());
        let a = parse_aus("R14A", &AuRules::default()).unwrap()[0];
        assert_eq!((a.code, a.side, a.intensity), (14, Side::Right, Some('A')));
    }

    #[test]
    fn ambiguous_items_need_a_rule() {
        let e = parse_aus("14 or 15", &AuRules::default()).unwrap_err();
        assert!(e.contains("ambiguous"), "{e}");
        assert!(parse_aus("?", &AuRules::default()).is_err());
        assert!(parse_aus("4+12?", &AuRules::default()).is_err());
        let rule = |ambiguous| AuRules {
            ambiguous,
            ..Default::default()
        };
        let q = |s: &str, r| -> Vec<String> {
            parse_aus(s, &rule(r))
                .unwrap()
                .iter()
                .map(|a| a.to_string())
                .collect()
        };
        assert_eq!(q("4+14 or 15", AmbiguityRule::First), ["4", "14"]);
        assert_eq!(q("4+14 or 15", AmbiguityRule::All), ["4", "14", "15"]);
        assert_eq!(q("4+14 or 15", AmbiguityRule::Drop), ["4"]);
        assert_eq!(q("R12 or R15", AmbiguityRule::First), ["R12"]);
        assert_eq!(q("4+?", AmbiguityRule::All), ["4"]);
        assert_eq!(q("12?", AmbiguityRule::First), ["12"]);
        assert_eq!(q("12/15", AmbiguityRule::All), ["12", "15"]);
    }

    #[test]
    fn k_marks_need_a_rule() {
        assert!(parse_aus("AU4+AU12(k)", &AuRules::default()).is_err());
        let inc = AuRules {
            k_marked: KRule::Include,
            ..Default::default()
        };
        let exc = AuRules {
            k_marked: KRule::Exclude,
            ..Default::default()
        };
        let v = parse_aus("AU4+AU12(k)", &inc).unwrap();
        assert_eq!(v.len(), 2);
        assert!(v[1].k_marked && v[1].code == 12);
        assert_eq!(parse_aus("AU4+AU12(k)", &exc).unwrap().len(), 1);
    }

    #[test]
    fn garbage_is_an_error() {
        for s in ["smile", "12X", "123", "L", "4++7", "0"] {
            assert!(parse_aus(s, &AuRules::default()).is_err(), "{s}");
        }
    }
}
