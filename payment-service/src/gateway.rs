//! The payment gateway, simulated behind a trait (the one thing outside the
//! system that tests may replace).
//!
//! The simulation decides from the order id alone (a fixed hash mapped to
//! [0, 1) against `PAYMENT_SUCCESS_RATE`), so a redelivered order_created
//! can never flip an outcome. To force a decline in tests and demos, order
//! more than `PAYMENT_MAX_AMOUNT`: such amounts are always declined.

use shared::kafka::events::{DeclineReason, TransactionId};
use shared::money::Money;

/// What the gateway answered (the saga decides on it).
pub use saga::payment::Charge;

/// A payment gateway.
pub trait PaymentGateway: Send + Sync + 'static {
    fn charge(&self, order_id: i64, amount: Money) -> Charge;
}

/// The simulated gateway.
#[derive(Debug, Clone, Copy)]
pub struct SimulatedGateway {
    /// Share of charges approved (0.0..=1.0).
    pub success_rate: f64,
    /// Amounts above this are always declined.
    pub max_amount: Money,
}

/// splitmix64: a fixed, well-spread hash of the order id.
fn mix(order_id: i64) -> u64 {
    let mut z = (order_id as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl SimulatedGateway {
    /// Where in [0, 1) this order falls; approved when below the success rate.
    pub fn draw(order_id: i64) -> f64 {
        (mix(order_id) >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl PaymentGateway for SimulatedGateway {
    fn charge(&self, order_id: i64, amount: Money) -> Charge {
        if amount > self.max_amount {
            return Charge::Declined {
                reason: DeclineReason::OverLimit,
            };
        }
        if Self::draw(order_id) < self.success_rate {
            Charge::Approved {
                // Digits, letters and dashes: always a valid reference.
                transaction_id: TransactionId::parse(&format!(
                    "sim-{order_id}-{:016x}",
                    mix(order_id)
                ))
                .unwrap_or_else(|| unreachable!("a simulated reference is valid")),
            }
        } else {
            Charge::Declined {
                reason: DeclineReason::CardDeclined,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_deterministic_and_follow_the_rate() {
        let gw = SimulatedGateway {
            success_rate: 0.8,
            max_amount: Money(1_000_000),
        };
        let approved = (1..=10_000)
            .filter(|&id| matches!(gw.charge(id, Money(100)), Charge::Approved { .. }))
            .count();
        assert!((7_700..=8_300).contains(&approved), "{approved}");
        for id in 1..100 {
            assert_eq!(gw.charge(id, Money(100)), gw.charge(id, Money(100)));
        }
        assert!(matches!(
            gw.charge(1, Money(1_000_001)),
            Charge::Declined { .. }
        ));
        let never = SimulatedGateway {
            success_rate: 0.0,
            ..gw
        };
        assert!(matches!(never.charge(5, Money(1)), Charge::Declined { .. }));
    }
}
