int payq_http_placeholder;
