//! Validated inputs ("parse, don't validate"): each type here can only hold a
//! value that passed its rules, and parsing reports every fault at once as
//! field errors the HTTP layer renders in the Astro `Error` envelope.

use serde::Serialize;
use utoipa::ToSchema;

pub const MAX_NAME_CHARS: usize = 255;
pub const MAX_DESCRIPTION_CHARS: usize = 1000;
pub const MAX_EXPIRY_DAYS: i64 = 3650;

/// One field's fault, as Astro reports it in `fieldErrors`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    pub field: String,
    pub code: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &str, code: &str, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.to_string(),
            code: code.to_string(),
            message: message.into(),
        }
    }
}

/// Collects field errors while a request is parsed.
#[derive(Debug, Default)]
pub struct Faults(Vec<FieldError>);

impl Faults {
    pub fn check<T>(&mut self, result: Result<T, FieldError>) -> Option<T> {
        result.map_err(|e| self.0.push(e)).ok()
    }

    /// Every fault found, or the parsed value if there were none.
    pub fn finish<T>(self, build: impl FnOnce() -> Option<T>) -> Result<T, Vec<FieldError>> {
        if self.0.is_empty() {
            // With no fault, every `check` returned `Some`.
            build().ok_or_else(Vec::new)
        } else {
            Err(self.0)
        }
    }
}

/// A required name of at most 255 characters, with at least one visible
/// character and no bidirectional controls (which let a name display as
/// something else in a terminal table or the audit log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name(String);

impl Name {
    pub fn parse(field: &str, value: Option<String>) -> Result<Name, FieldError> {
        let value = value.unwrap_or_default();
        if value.chars().all(is_invisible) {
            return Err(FieldError::new(
                field,
                "required",
                format!("{field} is required and must contain a visible character"),
            ));
        }
        let value = check_length(field, value, MAX_NAME_CHARS)?;
        let value = check_characters(field, value, |c| c.is_control())?;
        match value.chars().find(|&c| is_bidi_control(c)) {
            Some(c) => Err(FieldError::new(
                field,
                "invalid_characters",
                format!(
                    "{field} must not contain bidirectional control characters (found U+{:04X})",
                    c as u32
                ),
            )),
            None => Ok(Name(value)),
        }
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// An optional description of at most 1,000 characters; absent is `""`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description(String);

impl Description {
    pub fn parse(field: &str, value: Option<String>) -> Result<Description, FieldError> {
        let value = check_length(field, value.unwrap_or_default(), MAX_DESCRIPTION_CHARS)?;
        // Line breaks and tabs are fine in a description; other control
        // characters (NUL above all, which PostgreSQL cannot store) are not.
        check_characters(field, value, |c| {
            c.is_control() && !matches!(c, '\n' | '\r' | '\t')
        })
        .map(Description)
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// Unicode's bidirectional formatting characters: embeddings and overrides
/// (U+202A–U+202E), isolates (U+2066–U+2069), and the marks U+200E, U+200F
/// and U+061C.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// Characters that show nothing: white space, Unicode's
/// `Default_Ignorable_Code_Point` set (zero-width spaces and joiners, soft
/// hyphen, variation selectors, tags, fillers, bidi controls ...), and the
/// blank braille pattern.
pub fn is_invisible(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{061C}'
                | '\u{115F}'..='\u{1160}'
                | '\u{17B4}'..='\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{2800}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{FFF0}'..='\u{FFF8}'
                | '\u{1BCA0}'..='\u{1BCA3}'
                | '\u{1D173}'..='\u{1D17A}'
                | '\u{E0000}'..='\u{E0FFF}'
        )
}

fn check_characters(
    field: &str,
    value: String,
    forbidden: impl Fn(char) -> bool,
) -> Result<String, FieldError> {
    match value.chars().find(|&c| forbidden(c)) {
        Some(c) => Err(FieldError::new(
            field,
            "invalid_characters",
            format!(
                "{field} must not contain control characters (found U+{:04X})",
                c as u32
            ),
        )),
        None => Ok(value),
    }
}

fn check_length(field: &str, value: String, max: usize) -> Result<String, FieldError> {
    let chars = value.chars().count();
    if chars > max {
        return Err(FieldError::new(
            field,
            "too_long",
            format!("{field} must be at most {max} characters; it has {chars}"),
        ));
    }
    Ok(value)
}

/// When a token issued at `now` with `tokenExpiryPeriodInDays` ends, if ever.
pub fn end_of(now: i64, expiry_days: Option<i64>) -> Option<i64> {
    const SECONDS_PER_DAY: i64 = 86_400;
    expiry_days.map(|days| now + days * SECONDS_PER_DAY)
}

/// `tokenExpiryPeriodInDays`: 1..=3650, or absent for a token that never expires.
pub fn parse_expiry_days(field: &str, value: Option<i64>) -> Result<Option<i64>, FieldError> {
    match value {
        None => Ok(None),
        Some(days) if (1..=MAX_EXPIRY_DAYS).contains(&days) => Ok(Some(days)),
        Some(days) => Err(FieldError::new(
            field,
            "out_of_range",
            format!("{field} must be between 1 and {MAX_EXPIRY_DAYS} days; got {days}"),
        )),
    }
}

/// A flag of Astro's that agentkey answers with a constant `false` (it
/// has no such feature): `false` or absent is fine, `true` is refused
/// rather than ignored. `feature` completes "agentkey has no ...".
pub fn only_false(field: &str, value: Option<bool>, feature: &str) -> Result<(), FieldError> {
    match value {
        Some(true) => Err(FieldError::new(
            field,
            "not_supported",
            format!("{field} cannot be true: agentkey has no {feature}"),
        )),
        _ => Ok(()),
    }
}

/// A text field of Astro's that agentkey cannot keep: absent, `null` or
/// `""` is fine, any other value is refused rather than ignored.
pub fn only_empty(field: &str, value: Option<&str>, feature: &str) -> Result<(), FieldError> {
    match value {
        Some(text) if !text.is_empty() => Err(FieldError::new(
            field,
            "not_supported",
            format!("{field} is not supported: agentkey has no {feature}"),
        )),
        _ => Ok(()),
    }
}

pub const MAX_GRACE_SECONDS: i64 = 86_400;

/// `gracePeriodSeconds` of a rotation: 0..=86400, absent meaning 0.
pub fn parse_grace_seconds(field: &str, value: Option<i64>) -> Result<i64, FieldError> {
    match value.unwrap_or(0) {
        seconds if (0..=MAX_GRACE_SECONDS).contains(&seconds) => Ok(seconds),
        seconds => Err(FieldError::new(
            field,
            "out_of_range",
            format!("{field} must be between 0 and {MAX_GRACE_SECONDS}; got {seconds}"),
        )),
    }
}

/// A reference to another resource by id, required.
pub fn parse_reference(field: &str, value: Option<String>) -> Result<String, FieldError> {
    match value {
        Some(id) if !id.is_empty() => Ok(id),
        _ => Err(FieldError::new(
            field,
            "required",
            format!("{field} is required"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(Name::parse("name", Some("a".into())).is_ok());
        assert_eq!(Name::parse("name", None).unwrap_err().code, "required");
        assert_eq!(
            Name::parse("name", Some("  ".into())).unwrap_err().code,
            "required"
        );
        assert!(
            Name::parse("name", Some("é".repeat(255))).is_ok(),
            "counts characters, not bytes"
        );
        assert_eq!(
            Name::parse("name", Some("a".repeat(256))).unwrap_err().code,
            "too_long"
        );
        for bad in ["a\0b", "a\nb", "tab\there", "\u{7f}"] {
            let err = Name::parse("name", Some(bad.into())).unwrap_err();
            assert_eq!(err.code, "invalid_characters", "{bad:?}");
        }
        assert!(Name::parse("name", Some("Ünïcødé 名前 ✓".into())).is_ok());
    }

    #[test]
    fn names_need_a_visible_character() {
        for blank in [
            "\u{200B}",
            "\u{200B}\u{200C}\u{200D}",
            " \u{FEFF} ",
            "\u{2060}\u{00AD}",
            "\u{3164}",
            "\u{2800}",
            "\u{E0041}",
            "\u{00A0}\u{3000}",
            "\u{FE0F}",
        ] {
            let err = Name::parse("name", Some(blank.into())).unwrap_err();
            assert_eq!(err.code, "required", "{blank:?}");
            assert!(err.message.contains("visible character"), "{}", err.message);
        }
        // Invisible characters next to visible ones are someone's business
        // (emoji sequences need U+200D and U+FE0F).
        assert!(Name::parse("name", Some("a\u{200B}b".into())).is_ok());
        assert!(Name::parse("name", Some("👩\u{200D}💻\u{FE0F}".into())).is_ok());
    }

    #[test]
    fn names_refuse_bidi_controls() {
        for c in ('\u{202A}'..='\u{202E}')
            .chain('\u{2066}'..='\u{2069}')
            .chain(['\u{200E}', '\u{200F}', '\u{061C}'])
        {
            let err = Name::parse("name", Some(format!("invoice{c}fdp.exe"))).unwrap_err();
            assert_eq!(err.code, "invalid_characters", "U+{:04X}", c as u32);
            assert_eq!(
                err.message,
                format!(
                    "name must not contain bidirectional control characters (found U+{:04X})",
                    c as u32
                )
            );
        }
        // Right-to-left text itself is fine.
        assert!(Name::parse("name", Some("שלום עולם".into())).is_ok());
        assert!(Name::parse("name", Some("مرحبا".into())).is_ok());
    }

    #[test]
    fn descriptions_and_expiry() {
        assert_eq!(Description::parse("d", None).unwrap().into_inner(), "");
        assert!(Description::parse("d", Some("x".repeat(1000))).is_ok());
        assert!(Description::parse("d", Some("x".repeat(1001))).is_err());
        assert!(Description::parse("d", Some("line one\nline two\ttab\r\n".into())).is_ok());
        assert!(Description::parse("d", Some("nul\0".into())).is_err());
        assert!(Description::parse("d", Some("bell\u{7}".into())).is_err());
        assert_eq!(parse_expiry_days("e", None), Ok(None));
        assert_eq!(parse_expiry_days("e", Some(1)), Ok(Some(1)));
        assert_eq!(parse_expiry_days("e", Some(3650)), Ok(Some(3650)));
        assert!(parse_expiry_days("e", Some(0)).is_err());
        assert!(parse_expiry_days("e", Some(3651)).is_err());
    }

    #[test]
    fn grace_seconds() {
        assert_eq!(parse_grace_seconds("g", None), Ok(0));
        assert_eq!(parse_grace_seconds("g", Some(86_400)), Ok(86_400));
        assert!(parse_grace_seconds("g", Some(-1)).is_err());
        assert!(parse_grace_seconds("g", Some(86_401)).is_err());
    }

    #[test]
    fn faults_collect_everything() {
        let mut faults = Faults::default();
        let name = faults.check(Name::parse("name", None));
        let desc = faults.check(Description::parse("description", Some("x".repeat(1001))));
        let errors = faults.finish(|| Some((name?, desc?))).unwrap_err();
        assert_eq!(errors.len(), 2);
    }
}
