"""``ebbtide audit export``: a subject's or a period's messages from the pipeline's topics, as
files a regulator can read and check offline. :mod:`.run` writes an export; :mod:`.sources` and
:mod:`.reading` choose and read the messages, :mod:`.decoding` and :mod:`.lines` turn them into
JSONL and CSV, :mod:`.files` writes them with the manifest, :mod:`.keys` finds the public keys,
:mod:`.views`, :mod:`.report` and :mod:`.report_subject` make the HTML report."""
