//! Carrier (`code` / `courier_code`) table.

use std::fmt;

/// A SweetTracker carrier code. Named variants are the v0.3 doc table \[pinned\]; anything else
/// (the later 2022 list, codes ≥ 100, …) is kept verbatim in [`Carrier::Other`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Carrier {
    /// `01` 우체국택배 (Korea Post).
    KoreaPost,
    /// `04` CJ대한통운.
    CjLogistics,
    /// `05` 한진택배.
    Hanjin,
    /// `06` 로젠택배.
    Logen,
    /// `08` 롯데택배.
    Lotte,
    /// `11` 일양로지스.
    Ilyang,
    /// `12` EMS.
    Ems,
    /// `13` DHL.
    Dhl,
    /// `14` UPS.
    Ups,
    /// `15` GTX.
    Gtx,
    /// `17` 천일택배.
    Chunil,
    /// `18` 건영택배.
    Kunyoung,
    /// `20` 한덱스.
    Handex,
    /// `21` Fedex.
    Fedex,
    /// `22` 대신택배.
    Daesin,
    /// `23` 경동택배.
    Kyungdong,
    /// `24` CVSnet 편의점택배 (GS25).
    CvsNet,
    /// `25` TNT Express.
    Tnt,
    /// `26` USPS.
    Usps,
    /// `32` 합동택배.
    Hapdong,
    /// `46` CU 편의점택배.
    CuPost,
    /// `53` 농협택배.
    Nonghyup,
    /// `99` 롯데택배 해외특송.
    LotteGlobal,
    /// Any other code, verbatim.
    Other(String),
}

/// `(code, name)` of every carrier code SweetTracker documents (the v0.3 table, plus the 2022
/// list where it adds codes). Names as SweetTracker's documentation gives them.
pub const KNOWN_CARRIERS: &[(&str, &str)] = &[
    ("01", "우체국택배"),
    ("04", "CJ대한통운"),
    ("05", "한진택배"),
    ("06", "로젠택배"),
    ("08", "롯데택배"),
    ("11", "일양로지스"),
    ("12", "EMS"),
    ("13", "DHL"),
    ("14", "UPS"),
    ("15", "GTX"),
    ("16", "한의사랑택배"),
    ("17", "천일택배"),
    ("18", "건영택배"),
    ("19", "고려택배"),
    ("20", "한덱스"),
    ("21", "Fedex"),
    ("22", "대신택배"),
    ("23", "경동택배"),
    ("24", "CVSnet 편의점택배(GS25)"),
    ("25", "TNT Express"),
    ("26", "USPS"),
    ("27", "TPL"),
    ("28", "GSMNtoN"),
    ("29", "에어보이익스프레스"),
    ("30", "KGL네트웍스"),
    ("32", "합동택배"),
    ("33", "DHL Global Mail"),
    ("34", "i-Parcel"),
    ("35", "포시즌 익스프레스"),
    ("37", "LX판토스"),
    ("38", "ECMS Express"),
    ("39", "드림택배"),
    ("40", "굿투럭"),
    ("41", "GSI Express"),
    ("42", "CJ대한통운 국제특송"),
    ("43", "애니트랙"),
    ("44", "SLX"),
    ("45", "우리택배(구호남택배)"),
    ("46", "CU 편의점택배"),
    ("47", "우리한방택배"),
    ("49", "A.C.E EXPRESS INC"),
    ("51", "성원글로벌카고"),
    ("52", "세방"),
    ("53", "농협택배"),
    ("54", "홈픽"),
    ("57", "Cway Express"),
    ("60", "YJS글로벌(영국)"),
    ("62", "홈이노베이션로지스"),
    ("63", "은하쉬핑"),
    ("64", "FLF퍼레버택배"),
    ("65", "YJS글로벌(월드)"),
    ("66", "Giant Network Group"),
    ("67", "디디로지스"),
    ("69", "대림통운"),
    ("70", "LOTOS CORPORATION"),
    ("71", "IK물류"),
    ("72", "성훈물류"),
    ("81", "제니엘시스템"),
    ("82", "프레시솔루션"),
    ("84", "스마트로지스"),
    ("85", "풀앳홈"),
    ("87", "이투마스(ETOMARS)"),
    ("88", "큐런택배"),
    ("89", "두발히어로"),
    ("91", "하이브시티"),
    ("92", "지니고 당일배송"),
    ("93", "팬스타국제특송(PIEX)"),
    ("94", "오늘의픽업"),
    ("95", "큐익스프레스"),
    ("96", "로지스밸리"),
    ("99", "롯데국제특송"),
];

impl Carrier {
    /// Maps a wire code to a carrier (never fails; unknown codes become `Other`).
    pub fn from_code(code: &str) -> Self {
        match code.trim() {
            "01" => Self::KoreaPost,
            "04" => Self::CjLogistics,
            "05" => Self::Hanjin,
            "06" => Self::Logen,
            "08" => Self::Lotte,
            "11" => Self::Ilyang,
            "12" => Self::Ems,
            "13" => Self::Dhl,
            "14" => Self::Ups,
            "15" => Self::Gtx,
            "17" => Self::Chunil,
            "18" => Self::Kunyoung,
            "20" => Self::Handex,
            "21" => Self::Fedex,
            "22" => Self::Daesin,
            "23" => Self::Kyungdong,
            "24" => Self::CvsNet,
            "25" => Self::Tnt,
            "26" => Self::Usps,
            "32" => Self::Hapdong,
            "46" => Self::CuPost,
            "53" => Self::Nonghyup,
            "99" => Self::LotteGlobal,
            other => Self::Other(other.to_owned()),
        }
    }

    /// Wire code.
    pub fn code(&self) -> &str {
        match self {
            Self::KoreaPost => "01",
            Self::CjLogistics => "04",
            Self::Hanjin => "05",
            Self::Logen => "06",
            Self::Lotte => "08",
            Self::Ilyang => "11",
            Self::Ems => "12",
            Self::Dhl => "13",
            Self::Ups => "14",
            Self::Gtx => "15",
            Self::Chunil => "17",
            Self::Kunyoung => "18",
            Self::Handex => "20",
            Self::Fedex => "21",
            Self::Daesin => "22",
            Self::Kyungdong => "23",
            Self::CvsNet => "24",
            Self::Tnt => "25",
            Self::Usps => "26",
            Self::Hapdong => "32",
            Self::CuPost => "46",
            Self::Nonghyup => "53",
            Self::LotteGlobal => "99",
            Self::Other(c) => c,
        }
    }

    /// Display name from [`KNOWN_CARRIERS`], if the code is listed.
    pub fn name(&self) -> Option<&'static str> {
        let code = self.code();
        KNOWN_CARRIERS
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, n)| *n)
    }

    /// True if the code is in [`KNOWN_CARRIERS`].
    pub fn is_known(&self) -> bool {
        self.name().is_some()
    }
}

impl fmt::Display for Carrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl From<&str> for Carrier {
    fn from(code: &str) -> Self {
        Self::from_code(code)
    }
}
