#include "seed.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Every value comes from a splitmix64 stream keyed by (seed, table tag, company, row), so a row
 * does not depend on how many rows came before it and both sides derive equal values from the
 * same key. GUIDs are derived the same way, so CE lookups can point at rows by GUID.
 */

static const char *const default_companies[] = { "usmf", "usrt", "demf" };

struct cur {
	const char *code, *name, *symbol;
	double rate;
};
static const struct cur currencies[] = {
	{ "USD", "US Dollar", "$", 1.0 },
	{ "EUR", "Euro", "\xe2\x82\xac", 0.92 },
	{ "GBP", "Pound Sterling", "\xc2\xa3", 0.79 },
	{ "CAD", "Canadian Dollar", "CA$", 1.36 },
};
#define N_CUR (sizeof(currencies) / sizeof(currencies[0]))

struct unit {
	const char *symbol, *name, *klass;
	int precision;
};
static const struct unit units[] = {
	{ "ea", "Each", "Quantity", 0 }, { "pcs", "Pieces", "Quantity", 0 }, { "kg", "Kilogram", "Mass", 3 },
	{ "h", "Hour", "Time", 2 },      { "box", "Box", "Quantity", 0 },
};
#define N_UNITS (sizeof(units) / sizeof(units[0]))

struct term {
	const char *name, *desc;
	int days;
};
static const struct term terms[] = { { "Net10", "Net 10 days", 10 }, { "Net30", "Net 30 days", 30 }, { "Net60", "Net 60 days", 60 } };
#define N_TERMS (sizeof(terms) / sizeof(terms[0]))

static const char *const groups[][2] = { { "10", "Wholesale customers" }, { "20", "Retail customers" },
					 { "30", "Intercompany customers" } };
#define N_GROUPS (sizeof(groups) / sizeof(groups[0]))

#define N_SITES 2
#define WH_PER_SITE 2
#define N_WH (N_SITES * WH_PER_SITE)

static const char *const words1[] = { "Contoso", "Fabrikam", "Northwind", "Adventure Works", "Litware", "Tailspin",
				      "Wingtip", "Alpine Ski", "Proseware", "Woodgrove", "M\xc3\xbcller", "O'Brien",
				      "Caf\xc3\xa9 Lumi\xc3\xa8re", "Trey Research" };
static const char *const words2[] = { "Trading", "Supplies", "Industries", "Services", "Holdings", "Logistics", "Partners" };
static const char *const products1[] = { "Pump", "Valve", "Filter", "Sensor", "Motor", "Bearing", "Controller",
					 "Cable", "Panel", "Compressor" };
static const char *const products2[] = { "Standard", "Pro", "Mini", "XL", "Heavy-duty", "Eco" };
static const char *const cities[][3] = { { "Seattle", "98052", "USA" }, { "Chicago", "60601", "USA" },
					 { "Berlin", "10115", "DEU" }, { "London", "EC1A 1BB", "GBR" },
					 { "Toronto", "M5H 2N2", "CAN" } };
#define NEL(a) (sizeof(a) / sizeof((a)[0]))

struct gen {
	const struct seed_options *opt;
	seed_emit_fn emit;
	void *ctx;
	char *err;
	size_t errlen;
	int rc;   /* first failure: -1 or the emit callback's value */
	int oom;
	char comp[SEED_MAX_COMPANIES][5];
	char upper[SEED_MAX_COMPANIES][5];
	size_t n_comp;
};

/* ---- randomness ---- */

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

static uint64_t fnv1a(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 0x100000001b3ULL;
	}
	return h;
}

/* The stream for one row of one table. */
static uint64_t row_state(const struct gen *g, const char *tag, size_t company, size_t row)
{
	uint64_t x = g->opt->seed ^ fnv1a(tag);
	uint64_t y = x ^ ((uint64_t)company << 40) ^ (uint64_t)row;
	(void)splitmix64(&y);
	return y;
}

static uint64_t rnd(uint64_t *st, uint64_t n)
{
	return n ? splitmix64(st) % n : 0;
}

/* A version-4-shaped GUID derived from (tag, company, row). */
static void guid(const struct gen *g, const char *tag, size_t company, size_t row, char out[37])
{
	uint64_t st = row_state(g, tag, company, row) ^ 0x5eed5eed5eed5eedULL;
	uint64_t a = splitmix64(&st), b = splitmix64(&st);

	a = (a & 0xFFFFFFFFFFFF0FFFULL) | 0x0000000000004000ULL;
	b = (b & 0x3FFFFFFFFFFFFFFFULL) | 0x8000000000000000ULL;
	snprintf(out, 37, "%08x-%04x-%04x-%04x-%012llx", (unsigned)(a >> 32), (unsigned)((a >> 16) & 0xFFFF),
		 (unsigned)(a & 0xFFFF), (unsigned)(b >> 48), (unsigned long long)(b & 0xFFFFFFFFFFFFULL));
}

/* Days since 1970-01-01 to y-m-d (Howard Hinnant's civil_from_days). */
static void civil(long z, int *y, int *m, int *d)
{
	long era, yoe, doy, mp;
	z += 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	yoe = z - era * 146097;
	yoe = (yoe - yoe / 1460 + yoe / 36524 - yoe / 146096) / 365;
	doy = z - era * 146097 - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	*d = (int)(doy - (153 * mp + 2) / 5 + 1);
	*m = (int)(mp < 10 ? mp + 3 : mp - 9);
	*y = (int)(yoe + era * 400 + (*m <= 2));
}

/* A date in 2025 (day offset from the stream) as "YYYY-MM-DD". */
static void date_of(uint64_t *st, char out[24])
{
	int y, m, d;
	civil(20089 + (long)rnd(st, 365), &y, &m, &d); /* 20089 = 2025-01-01 */
	snprintf(out, 24, "%04d-%02d-%02d", y, m, d);
}

/* Money-like value with two decimals in [lo, hi). */
static double cents(uint64_t *st, long lo, long hi)
{
	long c = lo * 100 + (long)rnd(st, (uint64_t)((hi - lo) * 100));
	return (double)c / 100.0;
}

/* ---- building records ---- */

static void pstr(struct gen *g, cJSON *o, const char *k, const char *v)
{
	if (o == NULL || cJSON_AddStringToObject(o, k, v) == NULL)
		g->oom = 1;
}

static void pnum(struct gen *g, cJSON *o, const char *k, double v)
{
	if (o == NULL || cJSON_AddNumberToObject(o, k, v) == NULL)
		g->oom = 1;
}

static void pbool(struct gen *g, cJSON *o, const char *k, int v)
{
	if (o == NULL || cJSON_AddBoolToObject(o, k, v) == NULL)
		g->oom = 1;
}

/* "<nav>@odata.bind": "/<set>(<guid of tag/company/row>)" */
static void bind(struct gen *g, cJSON *o, const char *nav, const char *set, const char *tag, size_t company, size_t row)
{
	char k[128], v[128], id[37];

	guid(g, tag, company, row, id);
	snprintf(k, sizeof(k), "%s@odata.bind", nav);
	snprintf(v, sizeof(v), "/%s(%s)", set, id);
	pstr(g, o, k, v);
}

static void jid(struct gen *g, cJSON *o, const char *k, const char *tag, size_t company, size_t row)
{
	char id[37];
	guid(g, tag, company, row, id);
	pstr(g, o, k, id);
}

static cJSON *rec(struct gen *g)
{
	cJSON *o = cJSON_CreateObject();
	if (o == NULL)
		g->oom = 1;
	return o;
}

/* Hands a record over; returns non-zero when generation must stop. */
static int put(struct gen *g, const char *set, cJSON *o)
{
	int r;

	if (g->rc)
		goto drop;
	if (g->oom || o == NULL) {
		snprintf(g->err, g->errlen, "seed: out of memory building %s", set);
		g->rc = -1;
		goto drop;
	}
	r = g->emit(g->ctx, set, o);
	if (r != 0) {
		snprintf(g->err, g->errlen, "seed: emit stopped at %s (%d)", set, r);
		g->rc = r;
	}
	return g->rc;
drop:
	cJSON_Delete(o);
	return g->rc;
}

static int ce_on(const struct gen *g)
{
	return (g->opt->side & SEED_SIDE_CE) != 0;
}

static int fo_on(const struct gen *g)
{
	return (g->opt->side & SEED_SIDE_FO) != 0;
}

/* Business keys, e.g. "CUSMF-00001". */
static void bkey(const struct gen *g, char prefix, size_t c, size_t i, char out[24])
{
	snprintf(out, 24, "%c%s-%05zu", prefix, g->upper[c], i + 1);
}

/* ---- tables ---- */

static int gen_companies(struct gen *g)
{
	for (size_t c = 0; c < g->n_comp; c++) {
		char name[64];
		snprintf(name, sizeof(name), "Company %s", g->upper[c]);
		if (ce_on(g)) {
			cJSON *o = rec(g);
			jid(g, o, "cdm_companyid", "company", c, 0);
			pstr(g, o, "cdm_companycode", g->comp[c]);
			pstr(g, o, "cdm_name", name);
			pbool(g, o, "cdm_isenabledfordualwrite", 1);
			if (put(g, "cdm_companies", o))
				return g->rc;
		}
		if (fo_on(g)) {
			cJSON *o = rec(g);
			pstr(g, o, "LegalEntityId", g->comp[c]);
			pstr(g, o, "Name", name);
			if (put(g, "LegalEntities", o))
				return g->rc;
		}
	}
	return 0;
}

static int gen_currencies_units(struct gen *g)
{
	for (size_t i = 0; i < N_CUR; i++) {
		if (ce_on(g)) {
			cJSON *o = rec(g);
			jid(g, o, "transactioncurrencyid", "currency", 0, i);
			pstr(g, o, "isocurrencycode", currencies[i].code);
			pstr(g, o, "currencyname", currencies[i].name);
			pstr(g, o, "currencysymbol", currencies[i].symbol);
			pnum(g, o, "currencyprecision", 2);
			pnum(g, o, "exchangerate", currencies[i].rate);
			if (put(g, "transactioncurrencies", o))
				return g->rc;
		}
		if (fo_on(g)) {
			cJSON *o = rec(g);
			pstr(g, o, "CurrencyCode", currencies[i].code);
			pstr(g, o, "Name", currencies[i].name);
			pstr(g, o, "Symbol", currencies[i].symbol);
			pnum(g, o, "GeneralRoundingRule", 0.01);
			pnum(g, o, "RoundingRulePrices", 0.01);
			if (put(g, "Currencies", o))
				return g->rc;
		}
	}
	for (size_t i = 0; i < N_UNITS; i++) {
		if (ce_on(g)) {
			cJSON *o = rec(g);
			jid(g, o, "uomid", "unit", 0, i);
			pstr(g, o, "name", units[i].name);
			pstr(g, o, "msdyn_symbol", units[i].symbol);
			pnum(g, o, "quantity", 1);
			if (put(g, "uoms", o))
				return g->rc;
		}
		if (fo_on(g)) {
			cJSON *o = rec(g);
			pstr(g, o, "UnitSymbol", units[i].symbol);
			pstr(g, o, "UnitDescription", units[i].name);
			pstr(g, o, "UnitClass", units[i].klass);
			pnum(g, o, "DecimalPrecision", units[i].precision);
			pstr(g, o, "IsBaseUnit", i == 0 ? "Yes" : "No");
			if (put(g, "UnitsOfMeasure", o))
				return g->rc;
		}
	}
	return 0;
}

static void site_id(size_t s, char out[48])
{
	snprintf(out, 48, "%zu", s + 1);
}

static void wh_id(size_t w, char out[48])
{
	snprintf(out, 48, "%zu%zu", w / WH_PER_SITE + 1, w % WH_PER_SITE + 1);
}

static int gen_sites_warehouses(struct gen *g)
{
	for (size_t c = 0; c < g->n_comp; c++)
		for (size_t s = 0; s < N_SITES; s++) {
			char id[48], name[64];
			site_id(s, id);
			snprintf(name, sizeof(name), "%s site %s", g->upper[c], id);
			if (ce_on(g)) {
				cJSON *o = rec(g);
				jid(g, o, "msdyn_operationalsiteid", "site", c, s);
				pstr(g, o, "msdyn_siteid", id);
				pstr(g, o, "msdyn_name", name);
				bind(g, o, "msdyn_company", "cdm_companies", "company", c, 0);
				if (put(g, "msdyn_operationalsites", o))
					return g->rc;
			}
			if (fo_on(g)) {
				cJSON *o = rec(g);
				pstr(g, o, "dataAreaId", g->comp[c]);
				pstr(g, o, "SiteId", id);
				pstr(g, o, "SiteName", name);
				if (put(g, "OperationalSitesV2", o))
					return g->rc;
			}
		}
	for (size_t c = 0; c < g->n_comp; c++)
		for (size_t w = 0; w < N_WH; w++) {
			char id[48], sid[48], name[64];
			wh_id(w, id);
			site_id(w / WH_PER_SITE, sid);
			snprintf(name, sizeof(name), "%s warehouse %s", g->upper[c], id);
			if (ce_on(g)) {
				cJSON *o = rec(g);
				jid(g, o, "msdyn_warehouseid", "warehouse", c, w);
				pstr(g, o, "msdyn_name", name);
				pstr(g, o, "msdyn_warehouseidentifier", id);
				bind(g, o, "msdyn_operationalsite", "msdyn_operationalsites", "site", c, w / WH_PER_SITE);
				bind(g, o, "msdyn_company", "cdm_companies", "company", c, 0);
				if (put(g, "msdyn_warehouses", o))
					return g->rc;
			}
			if (fo_on(g)) {
				cJSON *o = rec(g);
				pstr(g, o, "dataAreaId", g->comp[c]);
				pstr(g, o, "WarehouseId", id);
				pstr(g, o, "WarehouseName", name);
				pstr(g, o, "OperationalSiteId", sid);
				pstr(g, o, "WarehouseType", "Standard");
				if (put(g, "Warehouses", o))
					return g->rc;
			}
		}
	return 0;
}

static int gen_groups_terms(struct gen *g)
{
	for (size_t c = 0; c < g->n_comp; c++)
		for (size_t i = 0; i < N_GROUPS; i++) {
			if (ce_on(g)) {
				cJSON *o = rec(g);
				jid(g, o, "msdyn_customergroupid", "custgroup", c, i);
				pstr(g, o, "msdyn_groupid", groups[i][0]);
				pstr(g, o, "msdyn_description", groups[i][1]);
				bind(g, o, "msdyn_company", "cdm_companies", "company", c, 0);
				if (put(g, "msdyn_customergroups", o))
					return g->rc;
			}
			if (fo_on(g)) {
				cJSON *o = rec(g);
				pstr(g, o, "dataAreaId", g->comp[c]);
				pstr(g, o, "CustomerGroupId", groups[i][0]);
				pstr(g, o, "Description", groups[i][1]);
				pstr(g, o, "PaymentTermId", terms[i % N_TERMS].name);
				if (put(g, "CustomerGroups", o))
					return g->rc;
			}
		}
	for (size_t c = 0; c < g->n_comp; c++)
		for (size_t i = 0; i < N_TERMS; i++) {
			if (ce_on(g)) {
				cJSON *o = rec(g);
				jid(g, o, "msdyn_paymenttermid", "payterm", c, i);
				pstr(g, o, "msdyn_name", terms[i].name);
				pstr(g, o, "msdyn_description", terms[i].desc);
				bind(g, o, "msdyn_company", "cdm_companies", "company", c, 0);
				if (put(g, "msdyn_paymentterms", o))
					return g->rc;
			}
			if (fo_on(g)) {
				cJSON *o = rec(g);
				pstr(g, o, "dataAreaId", g->comp[c]);
				pstr(g, o, "Name", terms[i].name);
				pstr(g, o, "Description", terms[i].desc);
				pnum(g, o, "NumberOfDays", terms[i].days);
				pstr(g, o, "PaymentMethodType", "Net");
				if (put(g, "PaymentTerms", o))
					return g->rc;
			}
		}
	return 0;
}

/* An organisation name for row i (unique by its number). */
static void org_name(uint64_t *st, size_t i, char out[96])
{
	snprintf(out, 96, "%s %s %05zu", words1[rnd(st, NEL(words1))], words2[rnd(st, NEL(words2))], i + 1);
}

static int gen_vendors(struct gen *g)
{
	for (size_t c = 0; c < g->n_comp; c++)
		for (size_t i = 0; i < g->opt->per_table; i++) {
			uint64_t st = row_state(g, "vendor", c, i);
			char acct[24], name[96];
			size_t cur = (size_t)rnd(&st, N_CUR);
			size_t term = (size_t)rnd(&st, N_TERMS);
			bkey(g, 'V', c, i, acct);
			org_name(&st, i, name);
			if (ce_on(g)) {
				cJSON *o = rec(g);
				jid(g, o, "msdyn_vendorid", "vendor", c, i);
				pstr(g, o, "msdyn_vendoraccountnumber", acct);
				pstr(g, o, "msdyn_vendorname", name);
				bind(g, o, "transactioncurrencyid", "transactioncurrencies", "currency", 0, cur);
				pnum(g, o, "msdyn_onholdstatus", 192350000);
				bind(g, o, "msdyn_company", "cdm_companies", "company", c, 0);
				if (put(g, "msdyn_vendors", o))
					return g->rc;
				/* Field Service purchase orders point at the vendor as an account */
				o = rec(g);
				jid(g, o, "accountid", "vendoraccount", c, i);
				pstr(g, o, "accountnumber", acct);
				pstr(g, o, "name", name);
				pnum(g, o, "customertypecode", 11);
				bind(g, o, "transactioncurrencyid", "transactioncurrencies", "currency", 0, cur);
				bind(g, o, "msdyn_company", "cdm_companies", "company", c, 0);
				bind(g, o, "msdyn_vendor", "msdyn_vendors", "vendor", c, i);
				if (put(g, "accounts", o))
					return g->rc;
			}
			if (fo_on(g)) {
				cJSON *o = rec(g);
				pstr(g, o, "dataAreaId", g->comp[c]);
				pstr(g, o, "VendorAccountNumber", acct);
				pstr(g, o, "VendorOrganizationName", name);
				pstr(g, o, "VendorPartyType", "Organization");
				pstr(g, o, "CurrencyCode", currencies[cur].code);
				pstr(g, o, "DefaultPaymentTermsName", terms[term].name);
				pnum(g, o, "CreditLimit", 0);
				pstr(g, o, "OnHoldStatus", "No");
				if (put(g, "VendorsV2", o))
					return g->rc;
			}
		}
	return 0;
}

static int gen_customers(struct gen *g)
{
	for (size_t c = 0; c < g->n_comp; c++)
		for (size_t i = 0; i < g->opt->per_table; i++) {
			uint64_t st = row_state(g, "customer", c, i);
			char acct[24], name[96], email[128], phone[32];
			size_t cur = (size_t)rnd(&st, N_CUR);
			size_t grp = (size_t)rnd(&st, N_GROUPS);
			size_t term = (size_t)rnd(&st, N_TERMS);
			size_t city = (size_t)rnd(&st, NEL(cities));
			double credit = (double)(rnd(&st, 100) * 1000);
			bkey(g, 'C', c, i, acct);
			org_name(&st, i, name);
			snprintf(email, sizeof(email), "ap.%s.%05zu@example.com", g->comp[c], i + 1);
			snprintf(phone, sizeof(phone), "+1 555 %04u", (unsigned)rnd(&st, 10000));
			if (ce_on(g)) {
				cJSON *o = rec(g);
				jid(g, o, "accountid", "account", c, i);
				pstr(g, o, "accountnumber", acct);
				pstr(g, o, "name", name);
				pnum(g, o, "customertypecode", 3);
				pnum(g, o, "creditlimit", credit);
				pstr(g, o, "emailaddress1", email);
				pstr(g, o, "telephone1", phone);
				pstr(g, o, "address1_city", cities[city][0]);
				pstr(g, o, "address1_postalcode", cities[city][1]);
				pstr(g, o, "address1_country", cities[city][2]);
				pnum(g, o, "address1_addresstypecode", 2);
				pnum(g, o, "msdyn_onholdstatus", 192350000);
				bind(g, o, "transactioncurrencyid", "transactioncurrencies", "currency", 0, cur);
				bind(g, o, "msdyn_customergroupid", "msdyn_customergroups", "custgroup", c, grp);
				bind(g, o, "msdyn_paymentterm", "msdyn_paymentterms", "payterm", c, term);
				bind(g, o, "msdyn_company", "cdm_companies", "company", c, 0);
				if (put(g, "accounts", o))
					return g->rc;
			}
			if (fo_on(g)) {
				cJSON *o = rec(g);
				pstr(g, o, "dataAreaId", g->comp[c]);
				pstr(g, o, "CustomerAccount", acct);
				pstr(g, o, "OrganizationName", name);
				pstr(g, o, "PartyType", "Organization");
				pstr(g, o, "CustomerGroupId", groups[grp][0]);
				pstr(g, o, "SalesCurrencyCode", currencies[cur].code);
				pnum(g, o, "CreditLimit", credit);
				pstr(g, o, "PaymentTerms", terms[term].name);
				pstr(g, o, "OnHoldStatus", "No");
				pstr(g, o, "PrimaryContactEmail", email);
				pstr(g, o, "PrimaryContactPhone", phone);
				pstr(g, o, "DeliveryAddressCity", cities[city][0]);
				pstr(g, o, "DeliveryAddressZipCode", cities[city][1]);
				pstr(g, o, "DeliveryAddressCountryRegionISOCode", cities[city][2]);
				if (put(g, "CustomersV3", o))
					return g->rc;
			}
		}
	return 0;
}

/* Product i of a company: every fifth is a service, the rest items (stocked unless i % 7 == 3). */
struct product {
	char number[24], item[24], name[96], desc[160];
	int service, stocked;
	size_t unit, cur;
	double price, cost;
};

static void product_of(const struct gen *g, size_t c, size_t i, struct product *p)
{
	uint64_t st = row_state(g, "product", c, i);

	/* Item number = product number, as F&O's default number sequences give them and as the maps
	 * assume (product_inventory looks up ItemNumber by msdyn_productnumber). */
	bkey(g, 'P', c, i, p->number);
	bkey(g, 'P', c, i, p->item);
	p->service = i % 5 == 4;
	p->stocked = !p->service && i % 7 != 3;
	if (p->service) {
		snprintf(p->name, sizeof(p->name), "Service visit %05zu", i + 1);
		p->unit = 3; /* hour */
	} else {
		snprintf(p->name, sizeof(p->name), "%s %s %05zu", products1[rnd(&st, NEL(products1))],
			 products2[rnd(&st, NEL(products2))], i + 1);
		p->unit = (size_t)rnd(&st, 2); /* ea or pcs */
	}
	snprintf(p->desc, sizeof(p->desc), "%s, seeded product of %s", p->name, g->upper[c]);
	p->cur = 0; /* products are priced in USD */
	p->price = cents(&st, 5, 5000);
	p->cost = floor(p->price * 60.0) / 100.0;
}

static int gen_products(struct gen *g)
{
	for (size_t c = 0; c < g->n_comp; c++)
		for (size_t i = 0; i < g->opt->per_table; i++) {
			struct product p;
			product_of(g, c, i, &p);
			if (ce_on(g)) {
				cJSON *o = rec(g);
				jid(g, o, "productid", "product", c, i);
				pstr(g, o, "name", p.name);
				pstr(g, o, "productnumber", p.number);
				pstr(g, o, "msdyn_productnumber", p.number);
				pstr(g, o, "msdyn_itemnumber", p.item);
				pstr(g, o, "description", p.desc);
				pnum(g, o, "producttypecode", p.service ? 3 : 1);
				pnum(g, o, "msdyn_fieldserviceproducttype",
				   p.service ? 690970002 : (p.stocked ? 690970000 : 690970001));
				pbool(g, o, "msdyn_isstockedproduct", p.stocked);
				pnum(g, o, "price", p.price);
				pnum(g, o, "currentcost", p.cost);
				pnum(g, o, "quantitydecimal", units[p.unit].precision);
				bind(g, o, "defaultuomid", "uoms", "unit", 0, p.unit);
				bind(g, o, "transactioncurrencyid", "transactioncurrencies", "currency", 0, p.cur);
				if (put(g, "products", o))
					return g->rc;
			}
			if (fo_on(g)) {
				cJSON *o = rec(g);
				pstr(g, o, "dataAreaId", g->comp[c]);
				pstr(g, o, "ItemNumber", p.item);
				pstr(g, o, "ProductNumber", p.number);
				pstr(g, o, "SearchName", p.item);
				pstr(g, o, "ProductType", p.service ? "Service" : "Item");
				pstr(g, o, "InventoryUnitSymbol", units[p.unit].symbol);
				pstr(g, o, "PurchaseUnitSymbol", units[p.unit].symbol);
				pstr(g, o, "SalesUnitSymbol", units[p.unit].symbol);
				pnum(g, o, "SalesPrice", p.price);
				pnum(g, o, "PurchasePrice", p.cost);
				pnum(g, o, "UnitCost", p.cost);
				pstr(g, o, "ItemType", p.service ? "Service" : "Item");
				if (put(g, "ReleasedProductsV2", o))
					return g->rc;
				o = rec(g);
				pstr(g, o, "dataAreaId", g->comp[c]);
				pstr(g, o, "ProductNumber", p.number);
				pstr(g, o, "ItemNumber", p.item);
				pstr(g, o, "ProductName", p.name);
				pstr(g, o, "ProductDescription", p.desc);
				pstr(g, o, "ProductType", p.service ? "Service" : "Item");
				pstr(g, o, "FieldServiceProductType",
				   p.service ? "Service" : (p.stocked ? "Inventory" : "NonInventory"));
				pstr(g, o, "IsStockedProduct", p.stocked ? "Yes" : "No");
				pstr(g, o, "ServiceType", "NotSpecified");
				pstr(g, o, "SalesUnitSymbol", units[p.unit].symbol);
				pstr(g, o, "InventoryUnitSymbol", units[p.unit].symbol);
				pnum(g, o, "SalesPrice", p.price);
				pnum(g, o, "UnitCost", p.cost);
				pstr(g, o, "CurrencyCode", currencies[p.cur].code);
				pnum(g, o, "SalesUnitDecimalPrecision", units[p.unit].precision);
				if (put(g, "CDSReleasedDistinctProducts", o))
					return g->rc;
			}
		}
	return 0;
}

/* The n-th item (non-service) product index of a company, cycling. */
static size_t item_index(size_t per_table, size_t n)
{
	size_t items = per_table - per_table / 5; /* services are i % 5 == 4 */
	size_t k = items ? n % items : 0;
	return k / 4 * 5 + k % 4;
}

static int gen_assets(struct gen *g)
{
	size_t n = g->opt->per_table;

	for (size_t c = 0; c < g->n_comp; c++)
		for (size_t i = 0; i < n; i++) {
			uint64_t st = row_state(g, "asset", c, i);
			char id[24], parent[24], name[128], serial[32], acct[24], date[24], fodate[48];
			size_t cust = (size_t)rnd(&st, n);
			size_t prod = item_index(n, (size_t)rnd(&st, n));
			int has_parent = i % 5 == 4;
			struct product p;
			double cost = cents(&st, 100, 20000);
			product_of(g, c, prod, &p);
			bkey(g, 'A', c, i, id);
			bkey(g, 'A', c, i - (has_parent ? 1 : 0), parent);
			bkey(g, 'C', c, cust, acct);
			snprintf(name, sizeof(name), "%s at %s", p.name, acct);
			snprintf(serial, sizeof(serial), "SN-%010llu", (unsigned long long)rnd(&st, 10000000000ULL));
			date_of(&st, date);
			snprintf(fodate, sizeof(fodate), "%sT12:00:00Z", date);
			if (ce_on(g)) {
				cJSON *o = rec(g);
				jid(g, o, "msdyn_customerassetid", "asset", c, i);
				pstr(g, o, "msdyn_name", name);
				pstr(g, o, "msdyn_maintenanceassetid", id);
				pstr(g, o, "msdyn_serialid", serial);
				pstr(g, o, "msdyn_manufacturingdate", date);
				bind(g, o, "msdyn_account", "accounts", "account", c, cust);
				bind(g, o, "msdyn_product", "products", "product", c, prod);
				if (has_parent)
					bind(g, o, "msdyn_parentasset_msdyn_customerasset", "msdyn_customerassets", "asset", c,
					     i - 1);
				bind(g, o, "msdyn_company", "cdm_companies", "company", c, 0);
				if (put(g, "msdyn_customerassets", o))
					return g->rc;
			}
			if (fo_on(g)) {
				cJSON *o = rec(g);
				pstr(g, o, "dataAreaId", g->comp[c]);
				pstr(g, o, "MaintenanceAssetId", id);
				pstr(g, o, "Name", name);
				pstr(g, o, "SerialID", serial);
				pstr(g, o, "OwnerCustomerAccountNumber", acct);
				pstr(g, o, "ProductId", p.number);
				if (has_parent)
					pstr(g, o, "ParentMaintenanceAssetId", parent);
				pstr(g, o, "AcquisitionDate", fodate);
				pstr(g, o, "ActiveFrom", fodate);
				pnum(g, o, "AcquisitionCost", cost);
				if (put(g, "AssetMaintenanceAssetsV3", o))
					return g->rc;
			}
		}
	return 0;
}

static int gen_purchase_orders(struct gen *g)
{
	size_t n = g->opt->per_table;

	for (size_t c = 0; c < g->n_comp; c++)
		for (size_t i = 0; i < n; i++) {
			uint64_t st = row_state(g, "po", c, i);
			char po[24], vend[24], date[24], fodate[48], sid[48], wid[48];
			size_t vendor = (size_t)rnd(&st, n);
			size_t w = (size_t)rnd(&st, N_WH);
			size_t term = (size_t)rnd(&st, N_TERMS);
			size_t lines = 1 + (size_t)rnd(&st, 5);
			bkey(g, 'O', c, i, po);
			bkey(g, 'V', c, vendor, vend);
			date_of(&st, date);
			snprintf(fodate, sizeof(fodate), "%sT12:00:00Z", date);
			wh_id(w, wid);
			site_id(w / WH_PER_SITE, sid);
			if (ce_on(g)) {
				cJSON *o = rec(g);
				jid(g, o, "msdyn_purchaseorderid", "po", c, i);
				pstr(g, o, "msdyn_name", po);
				bind(g, o, "msdyn_vendor", "accounts", "vendoraccount", c, vendor);
				bind(g, o, "msdyn_invoicevendoraccount", "accounts", "vendoraccount", c, vendor);
				bind(g, o, "transactioncurrencyid", "transactioncurrencies", "currency", 0, 0);
				bind(g, o, "msdyn_receivetowarehouse", "msdyn_warehouses", "warehouse", c, w);
				bind(g, o, "msdyn_defaultreceivingsiteid", "msdyn_operationalsites", "site", c, w / WH_PER_SITE);
				bind(g, o, "msdyn_paymentterm", "msdyn_paymentterms", "payterm", c, term);
				pstr(g, o, "msdyn_dateexpected", date);
				pnum(g, o, "msdyn_systemstatus", 690970001);
				pnum(g, o, "msdyn_purchaseorderstatus", 192350001);
				pnum(g, o, "msdyn_documentapprovalstatus", 192350003);
				bind(g, o, "msdyn_company", "cdm_companies", "company", c, 0);
				if (put(g, "msdyn_purchaseorders", o))
					return g->rc;
			}
			if (fo_on(g)) {
				cJSON *o = rec(g);
				pstr(g, o, "dataAreaId", g->comp[c]);
				pstr(g, o, "PurchaseOrderNumber", po);
				pstr(g, o, "OrderVendorAccountNumber", vend);
				pstr(g, o, "InvoiceVendorAccountNumber", vend);
				pstr(g, o, "CurrencyCode", currencies[0].code);
				pstr(g, o, "PurchaseOrderStatus", "Backorder");
				pstr(g, o, "DocumentApprovalStatus", "Approved");
				pstr(g, o, "PurchaseType", "Purch");
				pstr(g, o, "DefaultReceivingSiteId", sid);
				pstr(g, o, "DefaultReceivingWarehouseId", wid);
				pstr(g, o, "RequestedDeliveryDate", fodate);
				pstr(g, o, "PaymentTermsName", terms[term].name);
				if (put(g, "PurchaseOrderHeadersV2", o))
					return g->rc;
			}
			for (size_t l = 0; l < lines; l++) {
				uint64_t lst = row_state(g, "poline", c, i * 8 + l);
				size_t prod = item_index(n, (size_t)rnd(&lst, n));
				double qty = (double)(1 + rnd(&lst, 100));
				struct product p;
				double amount;
				product_of(g, c, prod, &p);
				amount = round(qty * p.cost * 100.0) / 100.0;
				if (ce_on(g)) {
					cJSON *o = rec(g);
					jid(g, o, "msdyn_purchaseorderproductid", "poline", c, i * 8 + l);
					bind(g, o, "msdyn_purchaseorder", "msdyn_purchaseorders", "po", c, i);
					pnum(g, o, "msdyn_lineorder", (double)(l + 1));
					bind(g, o, "msdyn_product", "products", "product", c, prod);
					bind(g, o, "msdyn_unit", "uoms", "unit", 0, p.unit);
					pnum(g, o, "msdyn_quantity", qty);
					pnum(g, o, "msdyn_unitcost", p.cost);
					pnum(g, o, "msdyn_lineamount", amount);
					pstr(g, o, "msdyn_description", p.name);
					pstr(g, o, "msdyn_dateexpected", date);
					bind(g, o, "transactioncurrencyid", "transactioncurrencies", "currency", 0, 0);
					bind(g, o, "msdyn_associatetowarehouse", "msdyn_warehouses", "warehouse", c, w);
					bind(g, o, "msdyn_receivingsiteid", "msdyn_operationalsites", "site", c, w / WH_PER_SITE);
					pnum(g, o, "msdyn_purchaseorderlinestatus", 192350001);
					if (put(g, "msdyn_purchaseorderproducts", o))
						return g->rc;
				}
				if (fo_on(g)) {
					cJSON *o = rec(g);
					pstr(g, o, "dataAreaId", g->comp[c]);
					pstr(g, o, "PurchaseOrderNumber", po);
					pnum(g, o, "LineNumber", (double)(l + 1));
					pstr(g, o, "ItemNumber", p.item);
					pstr(g, o, "ProductNumber", p.number);
					pstr(g, o, "LineDescription", p.name);
					pnum(g, o, "OrderedPurchaseQuantity", qty);
					pstr(g, o, "PurchaseUnitSymbol", units[p.unit].symbol);
					pnum(g, o, "PurchasePrice", p.cost);
					pnum(g, o, "LineAmount", amount);
					pstr(g, o, "CalculateLineAmount", "Yes");
					pstr(g, o, "PurchaseOrderLineStatus", "Backorder");
					pstr(g, o, "ReceivingSiteId", sid);
					pstr(g, o, "ReceivingWarehouseId", wid);
					pstr(g, o, "CurrencyCode", currencies[0].code);
					pstr(g, o, "RequestedDeliveryDate", fodate);
					if (put(g, "PurchaseOrderLinesV2", o))
						return g->rc;
				}
			}
		}
	return 0;
}

/* One on-hand row per stocked item product, in warehouse (i % N_WH). */
static int gen_inventory(struct gen *g)
{
	for (size_t c = 0; c < g->n_comp; c++)
		for (size_t i = 0; i < g->opt->per_table; i++) {
			uint64_t st = row_state(g, "onhand", c, i);
			struct product p;
			size_t w = i % N_WH;
			char wid[48], sid[48];
			double onhand, reserved, ordered;
			product_of(g, c, i, &p);
			if (!p.stocked)
				continue;
			onhand = (double)rnd(&st, 1000);
			reserved = (double)rnd(&st, (uint64_t)onhand + 1);
			ordered = (double)rnd(&st, 200);
			wh_id(w, wid);
			site_id(w / WH_PER_SITE, sid);
			if (ce_on(g)) {
				cJSON *o = rec(g);
				char name[128];
				snprintf(name, sizeof(name), "%s @ %s", p.item, wid);
				jid(g, o, "msdyn_productinventoryid", "onhand", c, i);
				pstr(g, o, "msdyn_name", name);
				bind(g, o, "msdyn_product", "products", "product", c, i);
				bind(g, o, "msdyn_warehouse", "msdyn_warehouses", "warehouse", c, w);
				bind(g, o, "msdyn_unit", "uoms", "unit", 0, p.unit);
				pnum(g, o, "msdyn_qtyonhand", onhand);
				pnum(g, o, "msdyn_qtyavailable", onhand - reserved);
				pnum(g, o, "msdyn_qtyallocated", reserved);
				pnum(g, o, "msdyn_qtyonorder", ordered);
				if (put(g, "msdyn_productinventories", o))
					return g->rc;
			}
			if (fo_on(g)) {
				cJSON *o = rec(g);
				pstr(g, o, "dataAreaId", g->comp[c]);
				pstr(g, o, "ItemNumber", p.item);
				pstr(g, o, "ProductColorId", "");
				pstr(g, o, "ProductConfigurationId", "");
				pstr(g, o, "ProductSizeId", "");
				pstr(g, o, "ProductStyleId", "");
				pstr(g, o, "ProductVersionId", "");
				pstr(g, o, "InventorySiteId", sid);
				pstr(g, o, "InventoryWarehouseId", wid);
				pnum(g, o, "OnHandQuantity", onhand);
				pnum(g, o, "ReservedOnHandQuantity", reserved);
				pnum(g, o, "AvailableOnHandQuantity", onhand - reserved);
				pnum(g, o, "OnOrderQuantity", ordered);
				pnum(g, o, "OrderedQuantity", 0);
				pnum(g, o, "AvailableOrderedQuantity", 0);
				pnum(g, o, "ReservedOrderedQuantity", 0);
				pnum(g, o, "TotalAvailableQuantity", onhand - reserved);
				pstr(g, o, "ProductName", p.name);
				if (put(g, "WarehousesOnHandV2", o))
					return g->rc;
			}
		}
	return 0;
}

/* ---- API ---- */

void seed_options_init(struct seed_options *opt)
{
	memset(opt, 0, sizeof(*opt));
	opt->per_table = 10;
	opt->seed = 1;
	opt->side = SEED_SIDE_BOTH;
}

int seed_parse_side(const char *text, enum seed_side *out)
{
	if (text == NULL)
		return -1;
	if (strcmp(text, "ce") == 0)
		*out = SEED_SIDE_CE;
	else if (strcmp(text, "fo") == 0)
		*out = SEED_SIDE_FO;
	else if (strcmp(text, "both") == 0)
		*out = SEED_SIDE_BOTH;
	else
		return -1;
	return 0;
}

int seed_generate(const struct seed_options *opt, seed_emit_fn emit, void *ctx, char *errbuf, size_t errlen)
{
	struct gen g = { .opt = opt, .emit = emit, .ctx = ctx, .err = errbuf, .errlen = errlen };
	const char *const *comps = opt->companies ? opt->companies : default_companies;
	size_t n = opt->companies ? opt->n_companies : NEL(default_companies);
	int (*const steps[])(struct gen *) = { gen_companies, gen_currencies_units, gen_sites_warehouses,
					       gen_groups_terms, gen_vendors, gen_customers,
					       gen_products, gen_assets, gen_purchase_orders, gen_inventory };

	if (emit == NULL) {
		snprintf(errbuf, errlen, "seed: no emit callback");
		return -1;
	}
	if (opt->per_table > SEED_MAX_PER_TABLE) {
		snprintf(errbuf, errlen, "seed: %zu rows per table is above the limit of %d", opt->per_table,
			 SEED_MAX_PER_TABLE);
		return -1;
	}
	if (opt->side != SEED_SIDE_CE && opt->side != SEED_SIDE_FO && opt->side != SEED_SIDE_BOTH) {
		snprintf(errbuf, errlen, "seed: side must be ce, fo or both");
		return -1;
	}
	if (n == 0 || n > SEED_MAX_COMPANIES) {
		snprintf(errbuf, errlen, "seed: between 1 and %d companies, not %zu", SEED_MAX_COMPANIES, n);
		return -1;
	}
	for (size_t c = 0; c < n; c++) {
		const char *id = comps[c];
		size_t len = id ? strlen(id) : 0;
		if (len == 0 || len > 4) {
			snprintf(errbuf, errlen, "seed: company %zu: an id of 1-4 characters is needed", c);
			return -1;
		}
		for (size_t k = 0; k < len; k++)
			if (!islower((unsigned char)id[k]) && !isdigit((unsigned char)id[k])) {
				snprintf(errbuf, errlen, "seed: company \"%s\": only a-z and 0-9 are allowed", id);
				return -1;
			}
		for (size_t k = 0; k < c; k++)
			if (strcmp(g.comp[k], id) == 0) {
				snprintf(errbuf, errlen, "seed: company \"%s\" given twice", id);
				return -1;
			}
		snprintf(g.comp[c], sizeof(g.comp[c]), "%s", id);
		for (size_t k = 0; k <= len; k++)
			g.upper[c][k] = (char)toupper((unsigned char)id[k]);
	}
	g.n_comp = n;
	for (size_t s = 0; s < NEL(steps); s++)
		if (steps[s](&g) != 0)
			return g.rc;
	return 0;
}
