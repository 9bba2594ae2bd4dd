#pragma once
// The network layer in one include (depends on the engine only).
#include "ringline/net/connect.h"
#include "ringline/net/connection.h"
#include "ringline/net/listener.h"
#include "ringline/net/net_metrics.h"
#include "ringline/net/options.h"
#include "ringline/net/readers.h"
#include "ringline/net/result.h"
#include "ringline/net/socket_address.h"
#include "ringline/net/tls.h"
#include "ringline/net/udp.h"
