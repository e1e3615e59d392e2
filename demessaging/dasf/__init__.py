"""What exists only for DASF's demessaging 0.6: modules written for it run unchanged.

- :mod:`.main`: DASF's ``main()`` (``demessaging.main``), its command line on our commands;
- :mod:`.constants`: DASF's message constants (``demessaging.PulsarMessageConstants``);
- :mod:`.progress`: DASF's ``deprogressapi`` reports in the parameters of served functions.

Importing the package imports nothing else: ``demessaging`` imports :mod:`.progress` itself.
"""
