//! An account's email, parsed where it comes in (registration, login, the
//! bootstrap admin): trimmed and lower-cased, so one mailbox is one
//! account whatever the case it is typed in.

/// Longest accepted email (RFC 5321's limit on a path).
pub const MAX_EMAIL: usize = 254;

/// A normalised email: trimmed, lower case, `local@domain.tld`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

/// Text that is not an email.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("email must look like name@example.com")]
pub struct InvalidEmail;

impl Email {
    /// Trims and lower-cases `raw` and checks its shape.
    pub fn parse(raw: &str) -> Result<Self, InvalidEmail> {
        let email = raw.trim().to_lowercase();
        if email.len() > MAX_EMAIL || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(InvalidEmail);
        }
        let (local, domain) = email.split_once('@').ok_or(InvalidEmail)?;
        if local.is_empty()
            || domain.contains('@')
            || !domain.contains('.')
            || domain.starts_with('.')
            || domain.ends_with('.')
        {
            return Err(InvalidEmail);
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<InvalidEmail> for shared::error::ApiError {
    fn from(e: InvalidEmail) -> Self {
        shared::error::ApiError::invalid_field("email", e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_lowercased_and_checked() {
        assert_eq!(
            Email::parse("  Ann@Example.COM ").unwrap().as_str(),
            "ann@example.com"
        );
        for bad in [
            "", "ann", "ann@", "@x.io", "a@b", "a b@x.io", "a@@x.io", "a@x.io.",
        ] {
            assert_eq!(Email::parse(bad), Err(InvalidEmail), "{bad}");
        }
    }
}
