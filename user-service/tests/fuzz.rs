//! Property tests of the request validators: whatever bytes a client sends to
//! register, sign in, change a profile or a role, parsing and validation
//! never panic, every rejection is a 400 naming what is wrong, and what is
//! accepted keeps the account rules.

use proptest::prelude::*;
use serde_json::Value;
use shared::error::parse_json;
use shared::testing::inputs::{body, check_bad_request, email, object, text, value};
use user_service::api::{
    LoginRequest, MAX_NAME, MAX_PASSWORD, MIN_PASSWORD, ProfileUpdate, RegisterRequest, RoleUpdate,
};
use user_service::email::Email;

fn valid_name(name: &str) -> bool {
    !name.trim().is_empty() && name.chars().count() <= MAX_NAME && !name.contains('\0')
}

fn valid_password(password: &str) -> bool {
    (MIN_PASSWORD..=MAX_PASSWORD).contains(&password.chars().count())
}

/// What a normalised email looks like: one `@`, something before it, a
/// dotted domain after it, lower case, no spaces or control characters.
fn normalised_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && email.len() <= 254
        && email == email.to_lowercase()
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn register(bytes: &[u8]) -> Result<(), TestCaseError> {
    let req: RegisterRequest = match parse_json(bytes) {
        Ok(req) => req,
        Err(e) => return check_bad_request(&e),
    };
    match req.validate() {
        Ok(valid) => {
            prop_assert_eq!(
                req.name.as_deref().or(req.username.as_deref()),
                Some(valid.name)
            );
            prop_assert!(valid_name(valid.name), "{:?}", valid.name);
            prop_assert!(normalised_email(valid.email.as_str()), "{:?}", valid.email);
            prop_assert_eq!(valid.email.as_str(), req.email.trim().to_lowercase());
            prop_assert!(valid_password(valid.password));
        }
        Err(e) => check_bad_request(&e)?,
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4_000))]

    #[test]
    fn registrations_are_accepted_only_within_the_rules(
        bytes in body(object(&[
            ("name", value()),
            ("username", value()),
            ("email", prop_oneof![3 => email().prop_map(Value::from), 1 => value()].boxed()),
            ("password", value()),
        ]))
    ) {
        register(&bytes)?;
    }

    #[test]
    fn emails_normalise_to_one_shape_or_are_refused(raw in prop_oneof![text(), email()]) {
        match Email::parse(&raw) {
            Ok(email) => {
                prop_assert!(normalised_email(email.as_str()), "{:?} -> {:?}", raw, email);
                // Normalising is idempotent: what is stored is what a later login finds.
                prop_assert_eq!(Email::parse(email.as_str()).ok(), Some(email));
            }
            Err(e) => check_bad_request(&e.into())?,
        }
    }

    #[test]
    fn profile_updates_are_accepted_only_within_the_rules(
        bytes in body(object(&[
            ("name", value()), ("password", value()), ("current_password", value()),
        ]))
    ) {
        match parse_json::<ProfileUpdate>(&bytes).and_then(|u| u.validate().map(|()| u)) {
            Ok(u) => {
                prop_assert!(u.name.is_some() || u.password.is_some());
                prop_assert!(u.name.as_deref().is_none_or(valid_name));
                prop_assert!(u.password.as_deref().is_none_or(valid_password));
                prop_assert!(u.password.is_none() || u.current_password.is_some());
            }
            Err(e) => check_bad_request(&e)?,
        }
    }

    #[test]
    fn logins_and_role_changes_parse_or_are_refused(
        login in body(object(&[("email", value()), ("password", value())])),
        role in body(object(&[(
            "role",
            prop_oneof![Just(Value::from("admin")), Just(Value::from("customer")), value()].boxed(),
        )])),
    ) {
        if let Err(e) = parse_json::<LoginRequest>(&login) {
            check_bad_request(&e)?;
        }
        if let Err(e) = parse_json::<RoleUpdate>(&role) {
            check_bad_request(&e)?;
        }
    }
}
