//! The operations a simulated user performs, and the weighted mix they are
//! drawn from (`--mix browse=30,view=30,login=5,order=20,order_multi=5,poll=10`).

use std::str::FromStr;

use rand::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    /// `GET /products?limit=20&offset=..`: a page of the catalogue.
    Browse,
    /// `GET /products/{id}`: one product (cached).
    View,
    /// `POST /login`.
    Login,
    /// `POST /orders` with one item.
    Order,
    /// `POST /orders` with 2 to 4 items.
    OrderMulti,
    /// `GET /orders/{id}` of one of the user's orders (or the list).
    Poll,
}

impl Op {
    pub const ALL: [Op; 6] = [
        Op::Browse,
        Op::View,
        Op::Login,
        Op::Order,
        Op::OrderMulti,
        Op::Poll,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Op::Browse => "browse",
            Op::View => "view",
            Op::Login => "login",
            Op::Order => "order",
            Op::OrderMulti => "order_multi",
            Op::Poll => "poll",
        }
    }
}

/// Weights of the operations.
#[derive(Debug, Clone)]
pub struct Mix {
    weights: Vec<(Op, u32)>,
    total: u32,
}

impl Mix {
    pub fn pick(&self, rng: &mut impl Rng) -> Op {
        let mut n = rng.random_range(0..self.total);
        for (op, w) in &self.weights {
            if n < *w {
                return *op;
            }
            n -= w;
        }
        unreachable!("weights sum to total")
    }
}

impl FromStr for Mix {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut weights = Vec::new();
        for part in s.split(',').filter(|p| !p.trim().is_empty()) {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?}: expected name=weight"))?;
            let op = Op::ALL
                .into_iter()
                .find(|op| op.name() == name.trim())
                .ok_or_else(|| {
                    let names: Vec<_> = Op::ALL.iter().map(|o| o.name()).collect();
                    format!("{name:?}: unknown operation (one of {})", names.join(", "))
                })?;
            let weight: u32 = weight
                .trim()
                .parse()
                .map_err(|e| format!("{part:?}: weight: {e}"))?;
            if weight > 0 {
                weights.push((op, weight));
            }
        }
        let total = weights.iter().map(|(_, w)| w).sum();
        if total == 0 {
            return Err("the mix has no operation with a positive weight".into());
        }
        Ok(Self { weights, total })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_follow_the_weights_and_bad_mixes_are_refused() {
        let mix: Mix = "view=3, order=1, poll=0".parse().unwrap();
        let mut rng = rand::rng();
        let views = (0..40_000)
            .filter(|_| mix.pick(&mut rng) == Op::View)
            .count();
        assert!((29_000..31_000).contains(&views), "{views}");
        assert!(
            "view=1,nap=2"
                .parse::<Mix>()
                .unwrap_err()
                .contains("unknown operation")
        );
        assert!("view".parse::<Mix>().unwrap_err().contains("name=weight"));
        assert!("view=0".parse::<Mix>().is_err());
        assert!("view=-1".parse::<Mix>().is_err());
    }
}
