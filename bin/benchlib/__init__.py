"""What the bin/ benchmark scripts share: corpus generators (:mod:`.corpus`), timing and
subprocess measurements (:mod:`.measure`), machine and version capture (:mod:`.env`), raw
results and Markdown helpers (:mod:`.report`).

The scripts import it as ``benchlib`` with ``bin/`` on ``sys.path``; it is not part of the
glovefaiss package.
"""
