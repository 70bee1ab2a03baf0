"""The comparison report: study data read from the tracking store (``data``), its figures
(``figures``) and the page that puts them together (``build``)."""
