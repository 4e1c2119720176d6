//! The retry budget (Envoy's `retry_budget`): a failing upstream is not hit with a
//! retry storm, because retries in flight may only be a share of the requests in
//! flight. On by default for every upstream; counted per worker.

use crate::config::RetryBudget;

/// Whether one more retry may start while `retries` retries and `requests` requests
/// (the retried ones included) are in flight: retries stay below
/// `max(min_concurrency, ⌊percent% × requests⌋)`.
pub fn allows(budget: &RetryBudget, retries: u32, requests: u32) -> bool {
    let share = u64::from(requests) * u64::from(budget.percent) / 100;
    u64::from(retries) < share.max(u64::from(budget.min_concurrency))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_a_share_of_requests_with_a_floor() {
        let b = RetryBudget::default(); // 20%, at least 3
        assert!(allows(&b, 2, 1));
        assert!(!allows(&b, 3, 10));
        assert!(allows(&b, 3, 20));
        assert!(!allows(&b, 4, 20));
        assert!(allows(&b, 19, 100));
        assert!(!allows(&b, 20, 100));
        let none = RetryBudget {
            percent: 0,
            min_concurrency: 0,
        };
        assert!(!allows(&none, 0, 1000));
    }
}
