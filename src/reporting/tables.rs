//! The report as a list of sections, each one tidy table (one row per observation, one column
//! per variable). CSV, Markdown and HTML are rendered from these, so the three always show the
//! same content; `docs/report-formats.md` lists the sections and their columns.

use super::labels::{Lang, L, NO, YES};
use super::Report;

/// One cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Text(String),
    /// A number and the decimals shown to humans (CSV keeps full precision).
    Num(f64, usize),
    /// A yes/no answer where yes is good (met, on track).
    Flag(bool),
    /// A yes/no answer where yes is bad (over tolerance, below the baseline).
    Warn(bool),
    Empty,
}

impl Cell {
    /// Machine form (CSV): numbers in full (shortest round-trip) precision.
    pub fn raw(&self) -> String {
        match self {
            Cell::Text(s) => s.clone(),
            Cell::Num(v, _) => format!("{v}"),
            Cell::Flag(b) | Cell::Warn(b) => b.to_string(),
            Cell::Empty => String::new(),
        }
    }
    /// Human form: fixed decimals with thousands separators.
    pub fn human(&self, lang: Lang) -> String {
        match self {
            Cell::Text(s) => s.clone(),
            Cell::Num(v, d) => group(&format!("{v:.d$}", d = *d)),
            Cell::Flag(b) | Cell::Warn(b) => lang.show(if *b { YES } else { NO }),
            Cell::Empty => "—".into(),
        }
    }
    pub fn is_num(&self) -> bool {
        matches!(self, Cell::Num(..))
    }
    /// Whether the cell states a good (`Some(true)`) or a bad (`Some(false)`) outcome.
    pub fn verdict(&self) -> Option<bool> {
        match self {
            Cell::Flag(b) => Some(*b),
            Cell::Warn(b) => Some(!*b),
            _ => None,
        }
    }
}

/// Thousands separators in the integer part of a formatted number.
pub fn group(s: &str) -> String {
    let (sign, rest) = match s.strip_prefix('-') {
        Some(r) => ("-", r),
        None => ("", s),
    };
    let (int, frac) = match rest.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (rest, None),
    };
    let mut out = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    match frac {
        Some(f) => format!("{sign}{out}.{f}"),
        None => format!("{sign}{out}"),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Col {
    pub key: &'static str,
    pub label: L,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub id: &'static str,
    pub title: L,
    pub columns: Vec<Col>,
    pub rows: Vec<Vec<Cell>>,
}

fn cols(c: &[(&'static str, L)]) -> Vec<Col> {
    c.iter()
        .map(|(key, label)| Col { key, label: *label })
        .collect()
}

fn t(s: impl Into<String>) -> Cell {
    Cell::Text(s.into())
}
fn n(v: f64, d: usize) -> Cell {
    if v.is_finite() {
        Cell::Num(v, d)
    } else {
        Cell::Empty
    }
}
fn on(v: Option<f64>, d: usize) -> Cell {
    v.map(|v| n(v, d)).unwrap_or(Cell::Empty)
}
fn ot(v: &Option<String>) -> Cell {
    v.clone().map(Cell::Text).unwrap_or(Cell::Empty)
}

/// A key/value section: item, label, value, unit.
struct Kv {
    rows: Vec<Vec<Cell>>,
    lang: Lang,
}

impl Kv {
    fn new(lang: Lang) -> Kv {
        Kv {
            rows: Vec::new(),
            lang,
        }
    }
    fn add(&mut self, item: &str, label: L, value: Cell, unit: &str) {
        self.rows
            .push(vec![t(item), t(self.lang.show(label)), value, t(unit)]);
    }
    fn table(self, id: &'static str, title: L) -> Table {
        Table {
            id,
            title,
            columns: cols(&[
                ("item", L("项目代码", "item")),
                ("label", L("项目", "label")),
                ("value", L("数值", "value")),
                ("unit", L("单位", "unit")),
            ]),
            rows: self.rows,
        }
    }
}

/// Why the grid factor was chosen (`carbon.scope2.grid_factor.reason`).
pub fn grid_reason_label(r: &str) -> L {
    use crate::accounting::carbon::reason;
    match r {
        reason::CONFIGURED_YEAR => L("指定因子年份", "factor year configured"),
        reason::PROVINCE_LATEST_YEAR => L("本省因子，最新年份", "province, latest year"),
        reason::REGION_LATEST_YEAR => L(
            "本省无因子，区域电网最新年份",
            "no provincial factor; region, latest year",
        ),
        reason::NATIONAL_LATEST_YEAR => L("全国平均，最新年份", "national average, latest year"),
        reason::NATIONAL_ETS => L(
            "全国碳市场重点排放单位：全国电网平均因子",
            "national ETS enterprise: national average factor",
        ),
        reason::MARKET_RESIDUAL => L(
            "市场法：全国因子(不包括市场化交易的非化石能源电量)",
            "market-based: national factor excluding market-traded non-fossil electricity",
        ),
        _ => L("", "unknown"),
    }
}

fn certificate_kind_label(k: &str) -> L {
    match k {
        "unbundled" => L("单独交易", "unbundled"),
        "bundled" => L("随绿电交易", "bundled with green power"),
        "own_pv" => L("自发自用(不可交易)", "own generation (non-tradable)"),
        _ => L("", "unknown"),
    }
}

fn certificate_status_label(st: &str) -> L {
    match st {
        "deducted" => L("扣除", "deducted"),
        "refused_bundled" => L(
            "不重复扣除(已随绿电扣除)",
            "refused: deducted with the green power",
        ),
        "refused_own_pv" => L(
            "不重复扣除(已按自发电量扣除)",
            "refused: deducted as own generation",
        ),
        _ => L("", "unknown"),
    }
}

fn grid_level_label(b: &str) -> L {
    match b {
        "province" => L("省级", "province"),
        "region" => L("区域电网", "grid region"),
        _ => L("全国", "national"),
    }
}

fn grade_label(g: &str) -> L {
    match g {
        "grade_1" => L("1级", "grade 1"),
        "grade_2" => L("2级", "grade 2"),
        "grade_3" => L("3级", "grade 3"),
        "over_limit" => L("超限额", "over the limit"),
        "benchmark" => L("标杆", "benchmark"),
        "baseline" => L("基准", "baseline"),
        "below_baseline" => L("未达基准", "below the baseline"),
        _ => L("", "unknown"),
    }
}

fn band_label(b: &str) -> L {
    match b {
        "sharp" => L("尖峰", "sharp"),
        "peak" => L("高峰", "peak"),
        "flat" => L("平段", "flat"),
        "valley" => L("低谷", "valley"),
        _ => L("", "other"),
    }
}

/// The sections of a report, in the order they are printed.
pub fn sections(r: &Report, lang: Lang) -> Vec<Table> {
    let mut out = vec![
        enterprise(r, lang),
        summary(r, lang),
        carriers(r, lang),
        deductions(r, lang),
        green_certificates(r, lang),
        intensity(r, lang),
        products(r, lang),
        carbon(r),
    ];
    out.extend(grid_factor(r, lang));
    out.extend([tou(r, lang), balance(r)]);
    out.extend(months(r));
    out.extend([
        green_factory(r),
        mu(r),
        alerts(r),
        data_quality(r),
        counter_events(r),
        notes(r, lang),
        sources(r),
    ]);
    out
}

/// Enterprise identity.
fn enterprise(r: &Report, lang: Lang) -> Table {
    let e = &r.enterprise;
    let mut kv = Kv::new(lang);
    kv.add("name", L("企业名称", "enterprise"), ot(&e.name), "");
    kv.add(
        "credit_code",
        L("统一社会信用代码", "unified social credit code"),
        ot(&e.credit_code),
        "",
    );
    kv.add(
        "industry_code",
        L("行业代码(GB/T 4754)", "industry (GB/T 4754)"),
        ot(&e.industry_code),
        "",
    );
    kv.add("address", L("地址", "address"), ot(&e.address), "");
    kv.add("contact", L("联系人", "contact"), ot(&e.contact), "");
    kv.add(
        "software_version",
        L("软件版本", "software version"),
        t(format!("energy-gateway {}", e.software_version)),
        "",
    );
    kv.add(
        "report_date",
        L("报告日期", "report date"),
        t(e.report_date.clone()),
        "",
    );
    kv.add(
        "factor_tables",
        L("系数表版本", "factor tables"),
        t(e.factor_tables
            .iter()
            .map(|f| match &f.edition {
                Some(ed) => format!("{} ({ed})", f.file),
                None => f.file.clone(),
            })
            .collect::<Vec<_>>()
            .join("; ")),
        "",
    );
    kv.table("enterprise", L("企业信息", "Enterprise"))
}

/// Summary: the period and its key figures.
fn summary(r: &Report, lang: Lang) -> Table {
    let mut kv = Kv::new(lang);
    kv.add("site", L("企业", "site"), t(&r.site), "");
    kv.add("period", L("报告期", "period"), t(&r.period), "");
    kv.add("from", L("起", "from"), t(&r.from), "");
    kv.add("to", L("止", "to"), t(&r.to), "");
    if let Some(d) = &r.data_to {
        kv.add(
            "data_to",
            L("进行中，数据截至", "in progress, data to"),
            t(d),
            "",
        );
    }
    kv.add(
        "factor_table",
        L("折标系数表", "factor table"),
        t(&r.factor_table),
        "",
    );
    kv.add(
        "comprehensive_energy_tce",
        L(
            "综合能耗(当量值)",
            "comprehensive energy (calorific equivalent)",
        ),
        n(r.comprehensive_energy_tce, 3),
        "tce",
    );
    kv.add(
        "comprehensive_energy_equal_value_tce",
        L(
            "综合能耗(等价值)",
            "comprehensive energy (generation-input equivalent)",
        ),
        n(r.comprehensive_energy_equal_value_tce, 3),
        "tce",
    );
    kv.add(
        "exported_tce",
        L("外供能源(已扣除)", "exported energy (deducted)"),
        n(r.exported_tce, 3),
        "tce",
    );
    kv.add(
        "feedstock_tce",
        L("原料用能扣除", "feedstock deduction"),
        n(r.feedstock_tce, 3),
        "tce",
    );
    kv.add(
        "non_fossil_tce",
        L("非化石能源扣除", "non-fossil deduction"),
        n(r.non_fossil_tce, 3),
        "tce",
    );
    kv.add(
        "assessment_energy_tce",
        L(
            "考核能耗(当量值)",
            "assessment energy (calorific equivalent)",
        ),
        n(r.assessment_energy_tce, 3),
        "tce",
    );
    kv.add(
        "assessment_energy_equal_value_tce",
        L(
            "考核能耗(等价值)",
            "assessment energy (generation-input equivalent)",
        ),
        n(r.assessment_energy_equal_value_tce, 3),
        "tce",
    );
    kv.add(
        "value_added_10k_cny",
        L("工业增加值(现价)", "value added (current prices)"),
        on(r.value_added_10k_cny, 2),
        "10k CNY",
    );
    kv.add(
        "value_added_comparable_10k_cny",
        L("工业增加值(可比价)", "value added (comparable prices)"),
        on(r.value_added_comparable_10k_cny, 2),
        "10k CNY",
    );
    kv.add(
        "total_tco2",
        L("二氧化碳排放", "CO2 emissions"),
        n(r.carbon.total_tco2, 3),
        "tCO2",
    );
    kv.add(
        "max_demand_kw",
        L("最大需量", "maximum demand"),
        on(r.max_demand_kw, 1),
        "kW",
    );
    kv.add(
        "max_demand_at",
        L("最大需量时刻", "maximum demand at"),
        ot(&r.max_demand_at),
        "",
    );
    kv.add(
        "completeness_pct",
        L("数据完整率", "data completeness"),
        n(r.data_quality.completeness_pct, 2),
        "%",
    );
    kv.add(
        "alerts_fired",
        L("告警次数", "alerts fired"),
        n(r.alerts.fired as f64, 0),
        "",
    );
    kv.table("summary", L("概况", "Summary"))
}

/// Energy by carrier: quantities, factors, tce.
fn carriers(r: &Report, lang: Lang) -> Table {
    let rows = r
        .carriers
        .iter()
        .map(|c| {
            vec![
                t(&c.carrier),
                t(lang.carrier_name(&c.carrier, &c.name)),
                n(c.purchased, 2),
                n(c.generated, 2),
                n(c.exported, 2),
                n(c.manual, 2),
                n(c.quantity, 2),
                t(&c.unit),
                n(c.factor_kgce_per_unit, 4),
                t(format!("{:?}", c.factor_basis).to_lowercase()),
                t(c.factor_sources.join(" ")),
                n(c.tce, 3),
                n(c.equal_value_kgce_per_unit, 4),
                n(c.equal_value_tce, 3),
                n(c.feedstock_tce, 3),
            ]
        })
        .collect();
    Table {
        id: "carriers",
        title: L("分品种能源消费", "Energy by carrier"),
        columns: cols(&[
            ("carrier", L("品种", "carrier")),
            ("name", L("名称", "name")),
            ("purchased", L("购入", "purchased")),
            ("generated", L("自产", "generated")),
            ("exported", L("外供", "exported")),
            ("manual", L("手工录入", "manual")),
            ("quantity", L("消费量", "consumed")),
            ("unit", L("单位", "unit")),
            ("factor_kgce_per_unit", L("折标系数", "factor kgce/unit")),
            ("factor_basis", L("系数类型", "factor basis")),
            ("factor_sources", L("系数来源", "factor sources")),
            ("tce", L("当量值", "calorific-equivalent tce")),
            (
                "equal_value_kgce_per_unit",
                L("等价系数", "generation-input factor"),
            ),
            (
                "equal_value_tce",
                L("等价值", "generation-input-equivalent tce"),
            ),
            ("feedstock_tce", L("原料用能", "feedstock tce")),
        ]),
        rows,
    }
}

/// Electricity, feedstock and the non-fossil deductions.
fn deductions(r: &Report, lang: Lang) -> Table {
    let e = &r.electricity;
    let nf = &r.non_fossil;
    let mut kv = Kv::new(lang);
    kv.add(
        "purchased_kwh",
        L("外购电量", "purchased"),
        n(e.purchased_kwh, 0),
        "kWh",
    );
    kv.add(
        "generated_kwh",
        L("自发电量", "self-generated"),
        n(e.generated_kwh, 0),
        "kWh",
    );
    kv.add(
        "exported_kwh",
        L("上网电量", "exported"),
        n(e.exported_kwh, 0),
        "kWh",
    );
    kv.add(
        "consumed_kwh",
        L("用电量", "consumed"),
        n(e.consumed_kwh, 0),
        "kWh",
    );
    kv.add(
        "equal_value_kgce_per_kwh",
        L("电力等价系数", "electricity generation-input factor"),
        n(e.equal_value_kgce_per_kwh, 4),
        "kgce/kWh",
    );
    kv.add(
        "equal_value_source",
        L("等价系数来源", "generation-input factor source"),
        t(e.equal_value_site_source
            .clone()
            .unwrap_or_else(|| e.equal_value_sources.join(" "))),
        "",
    );
    kv.add(
        "non_fossil.self_generated_kwh",
        L("自发自用可再生电量", "self-generated renewables used"),
        n(nf.self_generated_kwh, 0),
        "kWh",
    );
    kv.add(
        "non_fossil.green_power_kwh",
        L("绿电交易", "green power bought"),
        n(nf.green_power_kwh, 0),
        "kWh",
    );
    kv.add(
        "non_fossil.green_certificates",
        L("绿证", "green certificates"),
        n(nf.green_certificates as f64, 0),
        "",
    );
    kv.add(
        "non_fossil.green_certificate_kwh",
        L("绿证电量", "green-certificate electricity"),
        n(nf.green_certificate_kwh, 0),
        "kWh",
    );
    kv.add(
        "non_fossil.deducted_kwh",
        L("非化石电力扣除", "non-fossil electricity deducted"),
        n(nf.deducted_kwh, 0),
        "kWh",
    );
    kv.add(
        "non_fossil.tce",
        L(
            "非化石能源扣除(当量值)",
            "non-fossil deduction (calorific equivalent)",
        ),
        n(nf.tce, 3),
        "tce",
    );
    kv.add(
        "non_fossil.equal_value_tce",
        L(
            "非化石能源扣除(等价值)",
            "non-fossil deduction (generation-input equivalent)",
        ),
        n(nf.equal_value_tce, 3),
        "tce",
    );
    kv.add(
        "feedstock_tce",
        L("原料用能扣除", "feedstock deduction"),
        n(r.feedstock_tce, 3),
        "tce",
    );
    kv.table(
        "deductions",
        L(
            "电力、原料用能与非化石能源",
            "Electricity, feedstock and non-fossil",
        ),
    )
}

/// Green-certificate batches (113号): deducted or refused.
fn green_certificates(r: &Report, lang: Lang) -> Table {
    let s = |l: L| lang.show(l);
    let nf = &r.non_fossil;
    let rows = nf
        .certificate_batches
        .iter()
        .map(|b| {
            vec![
                ot(&b.id),
                t(&b.period),
                ot(&b.production_period),
                t(s(certificate_kind_label(b.kind.as_str()))),
                ot(&b.origin_province),
                n(b.certificates as f64, 0),
                n(b.kwh, 0),
                n(b.deductible_kwh, 0),
                t(s(certificate_status_label(b.status))),
                ot(&b.source),
            ]
        })
        .collect();
    Table {
        id: "green_certificates",
        title: L("绿证批次", "Green-certificate batches"),
        columns: cols(&[
            ("id", L("批次", "batch")),
            ("period", L("计入月份", "counted for")),
            ("production_period", L("生产月份", "produced")),
            ("kind", L("类型", "kind")),
            ("origin_province", L("来源省份", "province of origin")),
            ("certificates", L("绿证数", "certificates")),
            ("kwh", L("电量", "kWh")),
            ("deductible_kwh", L("可扣除电量", "deductible kWh")),
            ("status", L("处理", "status")),
            ("source", L("依据", "source")),
        ]),
        rows,
    }
}

/// Energy intensity, the baseline and the target path.
fn intensity(r: &Report, lang: Lang) -> Table {
    let s = |l: L| lang.show(l);
    let mut kv = Kv::new(lang);
    kv.add(
        "intensity_tce_per_10k_cny",
        L("万元增加值能耗(现价)", "intensity (current prices)"),
        on(r.intensity_tce_per_10k_cny, 4),
        "tce/10k CNY",
    );
    kv.add(
        "intensity_comparable_tce_per_10k_cny",
        L("万元增加值能耗(可比价)", "intensity (comparable prices)"),
        on(r.intensity_comparable_tce_per_10k_cny, 4),
        "tce/10k CNY",
    );
    kv.add(
        "intensity_gross_tce_per_10k_cny",
        L("万元增加值能耗(未扣除)", "intensity before deductions"),
        on(r.intensity_gross_tce_per_10k_cny, 4),
        "tce/10k CNY",
    );
    kv.add(
        "intensity_ytd_tce_per_10k_cny",
        L("年初至今", "year to date"),
        on(r.intensity_ytd_tce_per_10k_cny, 4),
        "tce/10k CNY",
    );
    kv.add(
        "intensity_yoy_change_pct",
        L("同比变化", "year-on-year change"),
        on(r.intensity_yoy_change_pct, 2),
        "%",
    );
    kv.add(
        "intensity_basis",
        L("比较口径", "basis"),
        t(r.intensity_basis),
        "",
    );
    kv.add(
        "baseline",
        L("基期强度", "baseline intensity"),
        on(r.baseline.intensity_tce_per_10k_cny, 4),
        "tce/10k CNY",
    );
    kv.add(
        "baseline_year",
        L("基期年份", "base year"),
        t(r.baseline.year.to_string()),
        "",
    );
    kv.add(
        "baseline_basis",
        L("基期口径", "base basis"),
        t(s(if r.baseline.basis == "gross" {
            L("未扣除(统计口径)", "gross (nothing deducted)")
        } else {
            L("扣除原料用能和非化石能源后", "after the deductions")
        })),
        "",
    );
    kv.add(
        "intensity_compared_tce_per_10k_cny",
        L("同口径本期强度", "intensity on the base's basis"),
        on(r.intensity_compared_tce_per_10k_cny, 4),
        "tce/10k CNY",
    );
    kv.add(
        "change_vs_baseline_pct",
        L("较基期变化", "change vs base year"),
        on(r.change_vs_baseline_pct, 2),
        "%",
    );
    kv.add(
        "target_change_pct",
        L("目标降幅", "target change"),
        n(r.target.target_change_pct, 2),
        "%",
    );
    kv.add(
        "target_year",
        L("目标年份", "target year"),
        t(r.target.target_year.to_string()),
        "",
    );
    kv.add(
        "path_change_pct",
        L("目标路径(本年)", "target path (this year)"),
        n(r.target.path_change_pct, 2),
        "%",
    );
    kv.add(
        "margin_vs_path_pp",
        L("与路径差距", "margin to the path"),
        on(
            r.change_vs_baseline_pct
                .map(|c| c - r.target.path_change_pct),
            2,
        ),
        "pp",
    );
    kv.add(
        "on_track",
        L("是否达到路径", "on track"),
        r.on_track.map(Cell::Flag).unwrap_or(Cell::Empty),
        "",
    );
    let p = &r.progress;
    kv.add(
        "ytd_intensity_tce_per_10k_cny",
        L(
            "年初至今同口径强度",
            "year-to-date intensity (base's basis)",
        ),
        on(p.ytd_intensity_tce_per_10k_cny, 4),
        "tce/10k CNY",
    );
    kv.add(
        "cumulative_change_pct",
        L(
            "较基期累计变化(年初至今)",
            "cumulative change since the base year (YTD)",
        ),
        on(p.cumulative_change_pct, 2),
        "%",
    );
    kv.add(
        "completion_pct",
        L("完成进度", "target completion"),
        on(p.completion_pct, 1),
        "%",
    );
    kv.add(
        "progress_on_track",
        L("年初至今是否达到路径", "on track (year to date)"),
        p.on_track.map(Cell::Flag).unwrap_or(Cell::Empty),
        "",
    );
    kv.add(
        "target_source",
        L("目标依据", "target source"),
        ot(&r.target.source),
        "",
    );
    kv.table("intensity", L("能耗强度", "Energy intensity"))
}

/// Unit-product energy against the limit standards.
fn products(r: &Report, lang: Lang) -> Table {
    let s = |l: L| lang.show(l);
    let rows = r
        .products
        .iter()
        .map(|p| {
            let lim = p.limit.as_ref();
            vec![
                t(&p.id),
                t(p.name.clone().unwrap_or_default()),
                on(p.output, 2),
                t(&p.unit),
                n(p.energy_tce, 3),
                on(p.unit_energy, 4),
                t(&p.unit_energy_unit),
                t(lim.map(|l| l.standard.clone()).unwrap_or_default()),
                on(lim.and_then(|l| l.grade1.map(|g| g * l.correction)), 3),
                on(lim.and_then(|l| l.grade2.map(|g| g * l.correction)), 3),
                on(lim.and_then(|l| l.grade3.map(|g| g * l.correction)), 3),
                p.grade.map(|g| t(s(grade_label(g)))).unwrap_or(Cell::Empty),
                p.levels
                    .as_ref()
                    .and_then(|l| l.level)
                    .map(|g| t(s(grade_label(g))))
                    .unwrap_or(Cell::Empty),
                on(p.co2_kg_per_unit, 3),
            ]
        })
        .collect();
    Table {
        id: "products",
        title: L("单位产品综合能耗", "Unit-product energy"),
        columns: cols(&[
            ("product", L("产品", "product")),
            ("name", L("名称", "name")),
            ("output", L("产量", "output")),
            ("unit", L("单位", "unit")),
            ("energy_tce", L("能耗", "energy tce")),
            ("unit_energy", L("单位产品能耗", "unit energy")),
            ("unit_energy_unit", L("单位", "unit")),
            ("standard", L("限额标准", "limit standard")),
            ("grade1", L("1级", "grade 1")),
            ("grade2", L("2级", "grade 2")),
            ("grade3", L("3级", "grade 3")),
            ("grade", L("等级", "grade")),
            ("level", L("标杆/基准", "benchmark level")),
            ("co2_kg_per_unit", L("单位产品碳排放", "kgCO2/unit")),
        ]),
        rows,
    }
}

/// CO2 emissions, scope 1 and 2.
fn carbon(r: &Report) -> Table {
    let c = &r.carbon;
    let mut rows = Vec::new();
    for l in &c.scope1 {
        rows.push(vec![
            t("1"),
            t(&l.carrier),
            n(l.quantity, 2),
            t(&l.unit),
            n(l.tco2_per_unit, 9),
            t(format!("tCO2/{}", l.unit)),
            t(l.site_source.clone().unwrap_or_else(|| l.sources.join(" "))),
            n(l.tco2, 3),
        ]);
    }
    let g = c.scope2.grid_factor.as_ref();
    rows.push(vec![
        t("2"),
        t(format!("electricity ({})", c.scope2.method)),
        n(c.scope2.purchased_kwh - c.scope2.zero_carbon_kwh, 0),
        t("kWh"),
        on(g.map(|g| g.tco2_per_mwh), 4),
        t(
            g.map(|g| format!("tCO2/MWh {} {} {}", g.year, g.area, g.basis))
                .unwrap_or_default(),
        ),
        t(g.map(|g| g.sources.join(" ")).unwrap_or_default()),
        n(c.scope2.electricity_tco2, 3),
    ]);
    for l in &c.scope2.heat {
        rows.push(vec![
            t("2"),
            t(&l.carrier),
            n(l.quantity, 2),
            t(&l.unit),
            n(l.tco2_per_unit, 9),
            t(format!("tCO2/{}", l.unit)),
            t(l.site_source.clone().unwrap_or_else(|| l.sources.join(" "))),
            n(l.tco2, 3),
        ]);
    }
    for (scope, v) in [
        ("1 total", c.scope1_tco2),
        ("2 total", c.scope2_tco2),
        ("1+2 total", c.total_tco2),
    ] {
        rows.push(vec![
            t(scope),
            Cell::Empty,
            Cell::Empty,
            Cell::Empty,
            Cell::Empty,
            Cell::Empty,
            Cell::Empty,
            n(v, 3),
        ]);
    }
    Table {
        id: "carbon",
        title: L("二氧化碳排放(范围一、二)", "CO2 emissions (scope 1 and 2)"),
        columns: cols(&[
            ("scope", L("范围", "scope")),
            ("source", L("排放源", "source")),
            ("quantity", L("活动数据", "activity")),
            ("unit", L("单位", "unit")),
            ("factor", L("排放因子", "factor")),
            ("factor_unit", L("因子单位", "factor unit")),
            ("factor_sources", L("因子来源", "factor sources")),
            ("tco2", L("排放量", "tCO2")),
        ]),
        rows,
    }
}

/// Why this grid factor (only when scope 2 has one).
fn grid_factor(r: &Report, lang: Lang) -> Option<Table> {
    let s = |l: L| lang.show(l);
    let g = r.carbon.scope2.grid_factor.as_ref()?;
    let mut kv = Kv::new(lang);
    kv.add(
        "grid_factor",
        L("电力排放因子", "grid factor"),
        n(g.tco2_per_mwh, 4),
        "tCO2/MWh",
    );
    kv.add(
        "grid_level",
        L("因子层级", "level"),
        t(s(grid_level_label(g.basis))),
        "",
    );
    kv.add(
        "grid_area",
        L("地区", "area"),
        t(format!("{} ({})", g.area_name, g.area)),
        "",
    );
    kv.add(
        "grid_year",
        L("因子年份", "factor year"),
        t(g.year.to_string()),
        "",
    );
    kv.add(
        "grid_reason",
        L("选用理由", "why"),
        t(s(grid_reason_label(g.reason))),
        "",
    );
    kv.add(
        "grid_sources",
        L("来源", "sources"),
        t(g.sources.join(" ")),
        "",
    );
    Some(kv.table(
        "grid_factor",
        L("外购电力排放因子的选用", "Choice of the grid factor"),
    ))
}

/// Time-of-use split of electricity.
fn tou(r: &Report, lang: Lang) -> Table {
    let s = |l: L| lang.show(l);
    let mut rows = Vec::new();
    if let Some(tou) = &r.tou_kwh {
        let total: f64 = tou.values().sum();
        for band in ["sharp", "peak", "flat", "valley"] {
            if let Some(v) = tou.get(band) {
                rows.push(vec![
                    t(band),
                    t(s(band_label(band))),
                    n(*v, 0),
                    on((total > 0.0).then(|| v / total * 100.0), 2),
                ]);
            }
        }
    }
    Table {
        id: "tou",
        title: L("分时电量", "Time-of-use split"),
        columns: cols(&[
            ("band", L("时段代码", "band")),
            ("label", L("时段", "label")),
            ("kwh", L("电量 kWh", "kWh")),
            ("share_pct", L("占比 %", "share %")),
        ]),
        rows,
    }
}

/// Sub-meter balance.
fn balance(r: &Report) -> Table {
    let rows = r
        .balance
        .iter()
        .map(|b| {
            vec![
                t(&b.parent),
                t(b.quantity.as_str()),
                n(b.parent_consumption, 2),
                n(b.children_consumption, 2),
                n(b.difference, 2),
                on(b.difference_pct, 2),
                n(b.tolerance_pct, 2),
                Cell::Warn(b.flagged),
                t(&b.unit),
            ]
        })
        .collect();
    Table {
        id: "balance",
        title: L("分项计量平衡", "Sub-meter balance"),
        columns: cols(&[
            ("parent", L("总表", "parent")),
            ("quantity", L("量", "quantity")),
            ("parent_consumption", L("总表用量", "parent")),
            ("children_consumption", L("分表合计", "children")),
            ("difference", L("差值", "difference")),
            ("difference_pct", L("差值 %", "difference %")),
            ("tolerance_pct", L("允许 %", "tolerance %")),
            ("flagged", L("超差", "flagged")),
            ("unit", L("单位", "unit")),
        ]),
        rows,
    }
}

/// Month by month (only for a period longer than a month).
fn months(r: &Report) -> Option<Table> {
    if r.months.is_empty() {
        return None;
    }
    let rows = r
        .months
        .iter()
        .map(|m| {
            vec![
                t(&m.period),
                n(m.comprehensive_energy_tce, 3),
                n(m.comprehensive_energy_equal_value_tce, 3),
                n(m.assessment_energy_tce, 3),
                on(m.value_added_10k_cny, 2),
                on(m.intensity_tce_per_10k_cny, 4),
                n(m.total_tco2, 3),
                on(m.max_demand_kw, 1),
                n(m.completeness_pct, 2),
            ]
        })
        .collect();
    Some(Table {
        id: "months",
        title: L("分月", "Months"),
        columns: cols(&[
            ("month", L("月份", "month")),
            (
                "comprehensive_energy_tce",
                L("综合能耗(当量值)", "energy tce"),
            ),
            (
                "comprehensive_energy_equal_value_tce",
                L("综合能耗(等价值)", "generation-input-equivalent tce"),
            ),
            ("assessment_energy_tce", L("考核能耗", "assessment tce")),
            ("value_added_10k_cny", L("增加值", "value added")),
            ("intensity_tce_per_10k_cny", L("强度", "intensity")),
            ("total_tco2", L("排放", "tCO2")),
            ("max_demand_kw", L("最大需量", "max demand kW")),
            ("completeness_pct", L("完整率 %", "completeness %")),
        ]),
        rows,
    })
}

/// Green factory indicators.
fn green_factory(r: &Report) -> Table {
    let rows = r
        .indicators
        .green_factory
        .iter()
        .map(|g| {
            vec![
                t(&g.id),
                t(&g.name),
                on(g.value, 4),
                t(&g.unit),
                on(g.baseline, 4),
                on(g.leading, 4),
                ot(&g.levels_source),
                on(g.score, 4),
                n(g.weight, 0),
                on(g.points, 3),
                ot(&g.band),
            ]
        })
        .collect();
    Table {
        id: "green_factory",
        title: L(
            "绿色工厂 能源低碳化 (GB/T 36132-2025)",
            "Green factory, energy low-carbon (GB/T 36132-2025)",
        ),
        columns: cols(&[
            ("indicator", L("指标代码", "indicator")),
            ("name", L("指标", "name")),
            ("value", L("实际值", "value")),
            ("unit", L("单位", "unit")),
            ("baseline", L("基准值", "baseline")),
            ("leading", L("引领值", "leading")),
            ("levels_source", L("取值来源", "levels source")),
            ("score", L("得分率", "score 0-1")),
            ("weight", L("权重", "weight")),
            ("points", L("得分", "points")),
            ("band", L("能耗档", "band")),
        ]),
        rows,
    }
}

/// Per-mu indicators.
fn mu(r: &Report) -> Table {
    let rows = r
        .indicators
        .mu
        .iter()
        .map(|m| {
            vec![
                t(m.id),
                t(m.name),
                on(m.value, 4),
                t(m.unit),
                t(m.formula),
                t(m.source),
            ]
        })
        .collect();
    Table {
        id: "mu",
        title: L("亩均效益指标", "Per-mu indicators"),
        columns: cols(&[
            ("indicator", L("指标代码", "indicator")),
            ("name", L("指标", "name")),
            ("value", L("数值", "value")),
            ("unit", L("单位", "unit")),
            ("formula", L("公式", "formula")),
            ("source", L("来源", "source")),
        ]),
        rows,
    }
}

/// Alerts summary.
fn alerts(r: &Report) -> Table {
    let rows = r
        .alerts
        .rules
        .iter()
        .map(|a| {
            vec![
                t(&a.rule),
                t(&a.device),
                t(&a.severity),
                n(a.fired as f64, 0),
                n(a.resolved as f64, 0),
                ot(&a.first_fired),
                ot(&a.last_fired),
            ]
        })
        .collect();
    Table {
        id: "alerts",
        title: L("告警汇总", "Alerts summary"),
        columns: cols(&[
            ("rule", L("规则", "rule")),
            ("device", L("设备", "device")),
            ("severity", L("级别", "severity")),
            ("fired", L("触发", "fired")),
            ("resolved", L("恢复", "resolved")),
            ("first_fired", L("首次", "first fired")),
            ("last_fired", L("最近", "last fired")),
        ]),
        rows,
    }
}

/// Data quality per series and overall.
fn data_quality(r: &Report) -> Table {
    let dq = &r.data_quality;
    let mut rows: Vec<Vec<Cell>> = dq
        .series
        .iter()
        .map(|q| {
            vec![
                t(&q.device),
                t(q.quantity.as_str()),
                n(q.expected_intervals as f64, 0),
                n(q.measured_intervals as f64, 0),
                n(q.estimated_intervals as f64, 0),
                n(q.missing_intervals as f64, 0),
                n(q.completeness_pct, 2),
                Cell::Flag(q.completeness_pct >= 90.0),
            ]
        })
        .collect();
    rows.push(vec![
        t("*"),
        t("*"),
        n(dq.expected_intervals as f64, 0),
        n(dq.measured_intervals as f64, 0),
        n(dq.estimated_intervals as f64, 0),
        n(dq.missing_intervals as f64, 0),
        n(dq.completeness_pct, 2),
        Cell::Flag(dq.completeness_pct >= 90.0),
    ]);
    Table {
        id: "data_quality",
        title: L(
            "数据质量 (15分钟区间完整率, 要求 ≥ 90 %)",
            "Data quality (15-min intervals present, ≥ 90 % required)",
        ),
        columns: cols(&[
            ("device", L("计量器具", "meter")),
            ("quantity", L("量", "quantity")),
            ("expected", L("应有", "expected")),
            ("measured", L("实测", "measured")),
            ("estimated", L("估算", "estimated")),
            ("missing", L("缺失", "missing")),
            ("completeness_pct", L("完整率 %", "completeness %")),
            ("meets_90_pct", L("达到90%", "meets 90 %")),
        ]),
        rows,
    }
}

/// Counter events (resets, replacements, jumps).
fn counter_events(r: &Report) -> Table {
    let dq = &r.data_quality;
    let rows = dq
        .counter_events
        .iter()
        .map(|e| {
            vec![
                t(&e.device),
                t(e.quantity.as_str()),
                t(&e.time),
                t(e.kind),
                on(e.from_value, 2),
                on(e.to_value, 2),
                n(e.counted, 2),
                t(&e.detail),
            ]
        })
        .collect();
    Table {
        id: "counter_events",
        title: L("计数器事件", "Counter events"),
        columns: cols(&[
            ("device", L("计量器具", "meter")),
            ("quantity", L("量", "quantity")),
            ("time", L("时间", "time")),
            ("kind", L("类型", "kind")),
            ("from_value", L("前值", "from")),
            ("to_value", L("后值", "to")),
            ("counted", L("计入", "counted")),
            ("detail", L("说明", "detail")),
        ]),
        rows,
    }
}

/// Notes.
fn notes(r: &Report, lang: Lang) -> Table {
    let dq = &r.data_quality;
    let rows = dq
        .notes
        .iter()
        .chain(&r.indicators.notes)
        .map(|n| super::notes::text(n, lang))
        .chain(super::rounding::notes(r, lang))
        .map(|x| vec![t(x)])
        .collect();
    Table {
        id: "notes",
        title: L("说明", "Notes"),
        columns: cols(&[("note", L("说明", "note"))]),
        rows,
    }
}

/// Sources cited by tag.
fn sources(r: &Report) -> Table {
    let rows = r.sources.iter().map(|(k, v)| vec![t(k), t(v)]).collect();
    Table {
        id: "sources",
        title: L("数据来源", "Sources"),
        columns: cols(&[("tag", L("编号", "tag")), ("text", L("来源", "source"))]),
        rows,
    }
}

#[cfg(test)]
mod tests {
    use super::group;

    #[test]
    fn thousands() {
        assert_eq!(group("1234567.891"), "1,234,567.891");
        assert_eq!(group("-1234"), "-1,234");
        assert_eq!(group("12"), "12");
        assert_eq!(group("123.4"), "123.4");
    }
}
