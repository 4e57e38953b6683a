/* assets.h - the console's pages, scripts and styles, compiled into the binary. */
#pragma once

#include <stddef.h>

typedef struct console_asset {
	const char *path; /* "/app.js" */
	const char *type; /* Content-Type */
	const unsigned char *data;
	size_t len;
} console_asset_t;

/* Ends with an entry whose path is NULL. */
extern const console_asset_t console_assets[];
