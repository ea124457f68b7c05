#ifndef DW_EMU_SEED_H
#define DW_EMU_SEED_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

/*
 * Deterministic test-data generator for the emulators. From (seed, N, companies) it produces the
 * same records every time: reference data first (companies, currencies, units, sites, warehouses,
 * customer groups, payment terms, vendors), then accounts/customers, products, customer assets,
 * purchase orders with 1-5 lines each, and inventory rows. With side SEED_SIDE_BOTH the same
 * business keys (account numbers, item/product numbers, PO numbers, warehouse ids...) and equal
 * values appear on both sides under each side's field names, so a freshly seeded pair is in sync.
 *
 * Records are create bodies in the wire form of their side: CE records carry their primary id
 * GUID (deterministic) and set lookups with "<nav>@odata.bind": "/<set>(<guid>)" pointing only at
 * records emitted earlier; FO records carry every key field. Every record passes schema_validate()
 * for SCHEMA_OP_CREATE against the shipped schema files (tested).
 *
 * CE entity sets emitted: cdm_companies, transactioncurrencies, uoms, msdyn_operationalsites,
 * msdyn_warehouses, msdyn_customergroups, msdyn_paymentterms, msdyn_vendors, accounts (vendors as
 * accounts with customertypecode 11, then customers with 3), products, msdyn_customerassets,
 * msdyn_purchaseorders, msdyn_purchaseorderproducts, msdyn_productinventories.
 * FO entity sets emitted: LegalEntities, Currencies, UnitsOfMeasure, OperationalSitesV2,
 * Warehouses, CustomerGroups, PaymentTerms, VendorsV2, CustomersV3, ReleasedProductsV2,
 * CDSReleasedDistinctProducts, AssetMaintenanceAssetsV3, PurchaseOrderHeadersV2,
 * PurchaseOrderLinesV2, WarehousesOnHandV2.
 */

enum seed_side { SEED_SIDE_CE = 1, SEED_SIDE_FO = 2, SEED_SIDE_BOTH = 3 };

#define SEED_MAX_COMPANIES 16
#define SEED_MAX_PER_TABLE 1000000

struct seed_options {
	size_t per_table;   /* N: rows per company in each business table (vendors, customers,
			       products, assets, purchase orders, inventory); reference tables have
			       fixed small sizes; default 10 */
	uint64_t seed;      /* generator seed; default 1 */
	enum seed_side side; /* default SEED_SIDE_BOTH */
	const char *const *companies; /* company ids (dataAreaId, lower case, <= 4 chars); NULL = default */
	size_t n_companies;           /* default: 3 ("usmf", "usrt", "demf") */
};

/*
 * Receives one record. Ownership of `record` passes to the callback (it must cJSON_Delete it
 * eventually). `entity_set` is borrowed for the call. Return 0 to go on; any other value stops
 * the generator, which returns that value.
 */
typedef int (*seed_emit_fn)(void *ctx, const char *entity_set, cJSON *record);

/* Fills `opt` with the defaults above. */
void seed_options_init(struct seed_options *opt);

/* Parses "ce", "fo" or "both"; returns 0 or -1 when the text is none of those. */
int seed_parse_side(const char *text, enum seed_side *out) __attribute__((warn_unused_result));

/*
 * Generates the records and hands each to `emit`. Returns 0 when all were emitted; -1 with errbuf
 * filled when the options are invalid (N above SEED_MAX_PER_TABLE, a bad company id, too many
 * companies) or memory runs out; or the non-zero value `emit` returned (errbuf then says which
 * entity set it stopped at). Same options -> the same records in the same order, byte for byte.
 */
int seed_generate(const struct seed_options *opt, seed_emit_fn emit, void *ctx, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

#endif
