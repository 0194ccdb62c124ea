//! Gregorian → Jalali (Solar Hijri) conversion for the simulator's Persian dates.

use chrono::{Datelike, Duration, Timelike, Utc};

/// Convert a Gregorian date to Jalali `(year, month, day)` (classic arithmetic algorithm, valid
/// for the Gregorian years the simulator will ever see).
pub fn gregorian_to_jalali(gy: i64, gm: u32, gd: u32) -> (i64, u32, u32) {
    const G_D_M: [i64; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let gm_idx = (gm.clamp(1, 12) - 1) as usize;
    let gy2 = if gm > 2 { gy + 1 } else { gy };
    let mut days = 355_666 + 365 * gy + (gy2 + 3) / 4 - (gy2 + 99) / 100
        + (gy2 + 399) / 400
        + i64::from(gd)
        + G_D_M[gm_idx];
    let mut jy = -1595 + 33 * (days / 12_053);
    days %= 12_053;
    jy += 4 * (days / 1461);
    days %= 1461;
    if days > 365 {
        jy += (days - 1) / 365;
        days = (days - 1) % 365;
    }
    let (jm, jd) = if days < 186 {
        (1 + days / 31, 1 + days % 31)
    } else {
        (7 + (days - 186) / 30, 1 + (days - 186) % 30)
    };
    (jy, jm as u32, jd as u32)
}

/// Tehran time (UTC+03:30, no DST since 2022) as `1394/05/03 - 10:57`.
pub(crate) fn now_text() -> String {
    let t = Utc::now() + Duration::minutes(210);
    let (y, m, d) = gregorian_to_jalali(i64::from(t.year()), t.month(), t.day());
    format!("{y:04}/{m:02}/{d:02} - {:02}:{:02}", t.hour(), t.minute())
}

/// Jalali date-time `days` from now, `1394/04/24 10:25:00` style (download expiry).
pub(crate) fn in_days_text(days: i64) -> String {
    let t = Utc::now() + Duration::minutes(210) + Duration::days(days);
    let (y, m, d) = gregorian_to_jalali(i64::from(t.year()), t.month(), t.day());
    format!(
        "{y:04}/{m:02}/{d:02} {:02}:{:02}:{:02}",
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::gregorian_to_jalali;

    #[test]
    fn known_dates() {
        // 1394/05/03 is the tracking sample's date: 25 July 2015.
        assert_eq!(gregorian_to_jalali(2015, 7, 25), (1394, 5, 3));
        // Nowruz 1403 = 20 March 2024.
        assert_eq!(gregorian_to_jalali(2024, 3, 20), (1403, 1, 1));
        assert_eq!(gregorian_to_jalali(2024, 3, 19), (1402, 12, 29));
    }
}
