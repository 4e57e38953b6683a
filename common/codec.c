int payq_codec_placeholder;
